"""Synthetic datasets end to end: layout `cunet train` reads, seeds, resume, atomic songs, bad inputs."""

import json
import os

import numpy as np
import pytest
from synth_midi import band_song, drum_song
from test_synth_render import _soundfont

from cunet.data.sources import open_source, parse_data_spec
from cunet.errors import UserError
from cunet.synth.dataset import (
    STAGING_PREFIX,
    SynthSettings,
    remove_stale_staging,
    synthesize,
)
from cunet.synth.folder import STAGING_MARKER
from cunet.synth.licences import collection_licence


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("midi")
    band_song(root / "songs" / "band.mid")
    band_song(root / "songs" / "band2.mid")
    (root / "songs" / "LICENSE").write_text(
        "Permission is hereby granted, free of charge, to any person ..."
    )
    drum_song(root / "grooves" / "beat.mid", 10.0)
    return root


def _settings(inputs, out, **kw):
    base = dict(
        midi=(str(inputs / "songs"), str(inputs / "grooves")),
        out=str(out),
        minutes=0.5,
        seed=1,
        soundfonts=(_soundfont(),),
        jobs=1,
        song_seconds=6.0,
    )
    base.update(kw)
    return SynthSettings(**base)


@pytest.fixture(scope="module")
def dataset(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ds"
    notes = []
    manifest = synthesize(_settings(inputs, out), note=notes.append, progress=False)
    return out, manifest, notes


def test_layout_is_a_training_dataset(dataset):
    out, manifest, notes = dataset
    assert notes == []
    tracks = open_source(parse_data_spec(f"{out},valid=0"))["train"]
    assert len(tracks) == manifest["run"]["songs_total"] >= 5
    for track in tracks:
        assert "vocals" in track.silent and track.mixture is not None
        stems = [reader()[0] for reader in track.stems.values()]
        mixture, rate = track.mixture()
        assert rate == 44100 and mixture.shape[1] == 2
        assert np.abs(sum(stems) - mixture).max() < 1e-5
    grooves = [t for t in tracks if "grooves" in t.name]
    assert grooves and all(
        set(t.stems) == {"drums"} and {"bass", "other"} <= t.silent for t in grooves
    )
    assert not list(out.glob(STAGING_PREFIX + "*"))


def test_manifest_records_seed_variation_and_licences(dataset):
    out, manifest, _ = dataset
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert (
        manifest["settings"]["seed"] == 1
        and manifest["settings"]["stems"] == "drums=drums,bass=33-40,other=*"
    )
    assert manifest["licences"]["midi"]["songs"]["licence"] == "MIT (LICENSE)"
    assert manifest["licences"]["midi"]["grooves"]["licence"].startswith("unknown")
    assert all("MIT" in v for v in manifest["licences"]["soundfonts"].values())
    song = manifest["songs"][0]
    assert song["plan"]["seed"] == [1, 0] and {"tempo", "transpose", "soundfont", "pan"} <= set(
        song["plan"]
    )
    assert (
        manifest["run"]["real_time_factor"] > 0
        and manifest["run"]["real_time_factor_per_cpu_second"] > 0
    )
    assert sum(s["plan"]["seconds"] for s in manifest["songs"]) >= 30


def test_same_seed_gives_identical_files_and_resume_renders_nothing(dataset, inputs, tmp_path):
    out, manifest, _ = dataset
    again = synthesize(_settings(inputs, tmp_path / "again"), progress=False)
    assert [s["plan"] for s in again["songs"]] == [s["plan"] for s in manifest["songs"]]
    for song in manifest["songs"]:
        for name in song["stems"] + ["mixture"]:
            rel = f"train/{song['name']}/{name}.flac"
            assert (tmp_path / "again" / rel).read_bytes() == (out / rel).read_bytes()
    resumed = synthesize(_settings(inputs, out), progress=False)
    assert (
        resumed["run"]["songs_rendered"] == 0
        and resumed["run"]["songs_total"] == manifest["run"]["songs_total"]
    )


def test_interrupted_run_resumes(inputs, tmp_path):
    out = tmp_path / "ds"
    first = synthesize(_settings(inputs, out, minutes=0.3), progress=False)
    victim = out / "train" / first["songs"][-1]["name"]
    for path in victim.iterdir():
        path.unlink()
    victim.rmdir()  # as if the run died before this song was renamed in
    dead = out / f"{STAGING_PREFIX}999999999"  # a dead run's staging folder
    dead.mkdir()
    (dead / STAGING_MARKER).touch()
    (dead / "half.flac").write_bytes(b"x")
    grown = synthesize(_settings(inputs, out, minutes=0.5), progress=False)
    assert grown["run"]["songs_rendered"] == grown["run"]["songs_total"] - len(first["songs"]) + 1
    assert not list(out.glob(STAGING_PREFIX + "*"))


def test_other_settings_in_the_same_folder_are_refused(dataset, inputs):
    out, _, _ = dataset
    with pytest.raises(UserError, match="other settings"):
        synthesize(_settings(inputs, out, seed=2), progress=False)


def test_bad_inputs_are_noted_and_skipped(inputs, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.mid").write_bytes(b"")
    (bad / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    (bad / "text.mid").write_text("hello")
    band_song(bad / "good.mid")
    notsf = tmp_path / "fake.sf2"
    notsf.write_bytes(b"not a soundfont at all")
    notes = []
    manifest = synthesize(
        _settings(
            inputs,
            tmp_path / "ds",
            midi=(str(bad),),
            minutes=0.1,
            soundfonts=(str(notsf), _soundfont()),
        ),
        note=notes.append,
        progress=False,
    )
    assert manifest["run"]["songs_total"] >= 1
    assert {s["plan"]["midi"] for s in manifest["songs"]} == {str(bad / "good.mid")}
    assert len(notes) == 4 and all(n.startswith("note: skipped") and "\n" not in n for n in notes)
    assert any("fake.sf2" in n and "not a SoundFont" in n for n in notes)
    assert any("empty.mid" in n and "empty" in n for n in notes)


def test_nothing_usable_is_an_error(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.mid").write_text("hello")
    notsf = tmp_path / "fake.sf2"
    notsf.write_bytes(b"nope")
    with pytest.raises(UserError, match="no usable MIDI"):
        synthesize(
            SynthSettings(
                midi=(str(bad),),
                out=str(tmp_path / "o"),
                minutes=1,
                soundfonts=(_soundfont(),),
                jobs=1,
            ),
            note=lambda _: None,
            progress=False,
        )
    with pytest.raises(UserError, match="none of the soundfonts"):
        synthesize(
            SynthSettings(
                midi=(str(bad),),
                out=str(tmp_path / "o"),
                minutes=1,
                soundfonts=(str(notsf),),
                jobs=1,
            ),
            note=lambda _: None,
            progress=False,
        )
    assert not (tmp_path / "o" / "train").exists() or not any((tmp_path / "o" / "train").iterdir())


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"minutes": 0}, "--minutes"),
        ({"song_seconds": 1}, "--song-seconds"),
        ({"jobs": -1}, "--jobs"),
        ({"seed": -1}, "--seed"),
        ({"midi": ()}, "--midi"),
        ({"silent": ("bass",)}, "--silent"),
        ({"stems": "x"}, "--stems"),
    ],
)
def test_settings_are_validated(kw, match, tmp_path):
    base = dict(midi=("m",), out=str(tmp_path), minutes=1.0)
    base.update(kw)
    with pytest.raises(UserError, match=match):
        SynthSettings(**base).validate()


def test_stale_staging_of_live_runs_and_foreign_folders_are_kept(tmp_path):
    live, dead, empty = (
        tmp_path / f"{STAGING_PREFIX}{os.getpid()}",
        tmp_path / f"{STAGING_PREFIX}999999999",
        tmp_path / f"{STAGING_PREFIX}999999998",
    )
    for folder in (live, dead):
        folder.mkdir()
        (folder / STAGING_MARKER).touch()
    empty.mkdir()  # a run killed before it marked its folder
    # named like staging folders, but not cunet synth's: no marker
    theirs, notes = tmp_path / f"{STAGING_PREFIX}999999997", tmp_path / f"{STAGING_PREFIX}notes"
    for folder in (theirs, notes):
        folder.mkdir()
        (folder / "mine.txt").write_text("keep")
    remove_stale_staging(tmp_path)
    assert live.exists() and not dead.exists() and not empty.exists()
    assert (theirs / "mine.txt").read_text() == "keep" and (
        notes / "mine.txt"
    ).read_text() == "keep"


def test_a_manifest_cunet_synth_did_not_write_is_refused_before_any_work(inputs, tmp_path):
    for name, content in (
        ("text", b"my own notes"),
        ("json", b'{"songs": [], "generator": "cunet synth"}'),  # the marker must be the first key
        ("empty", b""),
    ):
        out = tmp_path / name
        out.mkdir()
        (out / "manifest.json").write_bytes(content)
        with pytest.raises(UserError, match="was not written by cunet synth"):
            synthesize(_settings(inputs, out), note=lambda _: None, progress=False)
        assert (out / "manifest.json").read_bytes() == content
        assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]  # nothing created
    (tmp_path / "folder" / "manifest.json").mkdir(parents=True)
    with pytest.raises(UserError, match="was not written by cunet synth"):
        synthesize(_settings(inputs, tmp_path / "folder"), progress=False)


def test_files_in_the_way_of_a_song_are_never_replaced(dataset, inputs, tmp_path):
    _, manifest, _ = dataset
    first = manifest["songs"][0]["name"]
    cases = {
        "folder": lambda song: (song.mkdir(), (song / "take1.wav").write_bytes(b"mine")),
        "file": lambda song: song.write_bytes(b"mine"),
        "list": lambda song: (song.mkdir(), (song / "song.json").write_bytes(b"[1, 2]")),
        "not json": lambda song: (song.mkdir(), (song / "song.json").write_bytes(b"mine")),
    }
    for case, make in cases.items():
        out = tmp_path / case
        (out / "train").mkdir(parents=True)
        make(out / "train" / first)
        before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        with pytest.raises(
            UserError, match=f"'{out / 'train' / first}' exists and was not written"
        ):
            synthesize(_settings(inputs, out), note=lambda _: None, progress=False)
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before, case
        assert not (out / "manifest.json").exists()


def test_collection_licence(tmp_path):
    (tmp_path / "COPYING").write_text(
        "Redistribution and use in source and binary forms ... Neither the name"
    )
    assert collection_licence(tmp_path) == "BSD-3-Clause (COPYING)"
    (tmp_path / "LICENSE").write_text("Creative Commons Attribution 4.0 International")
    assert collection_licence(tmp_path) == "CC-BY-4.0 (LICENSE)"

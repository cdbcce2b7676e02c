"""cunet.data.sources: data specs, MUSDB18 roots (musdb's split), folder datasets, clip folders.

All audio is synthesized: `make_synthetic_musdb` writes a MUSDB18 root in the wav layout whose
track names are real MUSDB18 names, some from musdb's fixed validation list and some from its
training split, so musdb's own split logic is exercised; folder datasets and clip folders are
written file by file here. Nothing here needs TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import (
    STEMS,
    TRAIN_NAMES,
    VALID_NAMES,
    make_folder_dataset,
    musdb_validation_names,
    write_track,
)

from cunet.data.sources import (
    DataSpec,
    _musdb_reader,
    check_musdb_length,
    open_musdb,
    open_source,
    open_sources,
    parse_data_spec,
    source_kind,
    track_key,
)
from cunet.errors import AudioError, DataError
from cunet.io import audio as audio_module


def noise(seconds: float = 0.2, rate: int = 44100, channels: int = 2, seed: int = 0) -> np.ndarray:
    return (
        0.1 * np.random.default_rng(seed).standard_normal((int(seconds * rate), channels))
    ).astype(np.float32)


def names(tracks) -> list[str]:
    return sorted(t.name for t in tracks)


# --------------------------------------------------------------------------- spec parsing


def test_parse_data_spec_options(tmp_path):
    spec = parse_data_spec(
        f"{tmp_path},stem=Vocals,rename=other:guitar,rename=Keys:other,weight=0.3,valid=3,wav"
    )
    assert spec == DataSpec(
        tmp_path,
        stem="vocals",
        rename=(("other", "guitar"), ("keys", "other")),
        weight=0.3,
        valid_tracks=3,
        is_wav=True,
    )
    assert (
        spec.renamed("other") == "guitar"
        and spec.renamed("keys") == "other"
        and spec.renamed("bass") == "bass"
    )
    plain = parse_data_spec(str(tmp_path))
    assert plain == DataSpec(tmp_path) and plain.weight == 1.0 and plain.valid_tracks is None
    assert (
        not plain.is_wav and parse_data_spec(str(tmp_path), is_wav=True).is_wav
    )  # --is-wav for every spec
    assert (
        parse_data_spec(f"{tmp_path}, weight=2 ").weight == 2.0
    )  # spaces around an option are allowed
    assert parse_data_spec(f"{tmp_path},valid=0").valid_tracks == 0
    assert parse_data_spec("~/x").path == Path("~/x").expanduser()


@pytest.mark.parametrize(
    "option",
    [
        "foo=1",
        "weight=0",
        "weight=-1",
        "weight=inf",
        "weight=1e400",
        "weight=1e308",
        "weight=nan",
        "weight=abc",
        "valid=-1",
        "valid=1.5",
        "valid=x",
        "rename=a",
        "rename=a:",
        "rename=:b",
        "rename=a:b:c",
        "stem=",
        "wav=1",
        "",
        "stems=vocals",
    ],
)
def test_parse_data_spec_rejects_bad_options(tmp_path, option):
    text = f"{tmp_path},{option}"
    with pytest.raises(DataError) as info:
        parse_data_spec(text)
    message = str(info.value)
    assert "\n" not in message
    assert f"bad option '{option}'" in message and text in message
    assert "stem=NAME" in message  # says what is valid


@pytest.mark.parametrize("text", ["", ",stem=vocals", "  ,wav"])
def test_parse_data_spec_needs_a_path(text):
    with pytest.raises(DataError, match="has no path"):
        parse_data_spec(text)


def test_source_id_is_stable_safe_and_distinguishes_options(tmp_path):
    (tmp_path / "My Stems!").mkdir()
    spec = parse_data_spec(str(tmp_path / "My Stems!"))
    assert (
        spec.source_id
        == parse_data_spec(str(tmp_path / "My Stems!") + ",weight=3,valid=2").source_id
    )
    assert spec.source_id.startswith("My_Stems-") and "/" not in spec.source_id
    others = {
        parse_data_spec(str(tmp_path / "My Stems!") + extra).source_id
        for extra in (",stem=vocals", ",stem=drums", ",rename=other:guitar")
    }
    assert len(others) == 3 and spec.source_id not in others
    assert parse_data_spec(str(tmp_path)).source_id != spec.source_id


def test_track_key_is_filesystem_safe():
    assert track_key("Johnny Lokke - Promises & Lies") == "Johnny_Lokke_-_Promises_Lies"
    assert "/" not in track_key("a/b") and track_key("///") == "track"


def test_source_kind(tmp_path, musdb_root):
    assert source_kind(parse_data_spec(f"{musdb_root},wav")) == "musdb"
    # A wav layout holding musdb's validation songs is MUSDB18 even without `wav`: its split is kept.
    assert source_kind(parse_data_spec(str(musdb_root))) == "musdb"
    plain = tmp_path / "plain" / "train" / "My Song"
    plain.mkdir(parents=True)
    (plain / "mixture.wav").write_bytes(b"")
    assert source_kind(parse_data_spec(str(tmp_path / "plain"))) == "folder"
    assert source_kind(parse_data_spec(f"{tmp_path},stem=vocals")) == "clips"
    mp4 = tmp_path / "mp4"
    (mp4 / "train").mkdir(parents=True)
    (mp4 / "train" / "x.stem.mp4").write_bytes(b"")
    assert source_kind(parse_data_spec(str(mp4))) == "musdb"
    with pytest.raises(DataError, match="is not a directory"):
        source_kind(parse_data_spec(str(tmp_path / "missing")))


# --------------------------------------------------------------------------- MUSDB18


def test_synthetic_names_cover_both_musdb_splits():
    valid = musdb_validation_names()
    assert set(VALID_NAMES) <= valid
    assert not set(TRAIN_NAMES) & valid


def test_open_musdb_uses_musdbs_split(musdb_root):
    train_tracks = open_musdb(musdb_root, "train", "train", is_wav=True)
    valid_tracks = open_musdb(musdb_root, "train", "valid", is_wav=True)
    assert names(train_tracks) == sorted(TRAIN_NAMES)
    assert names(valid_tracks) == sorted(VALID_NAMES)
    assert not {t.name for t in train_tracks} & musdb_validation_names()
    assert names(open_musdb(musdb_root, "train", None, is_wav=True)) == sorted(
        [*TRAIN_NAMES, *VALID_NAMES]
    )


def test_open_musdb_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        open_musdb(tmp_path / "nope", is_wav=True)


def test_open_source_musdb(musdb_root):
    spec = parse_data_spec(f"{musdb_root},wav,weight=2,rename=other:guitar")
    splits = open_source(spec)
    assert names(splits["train"]) == sorted(TRAIN_NAMES) and names(splits["valid"]) == sorted(
        VALID_NAMES
    )
    track = splits["train"][0]
    assert set(track.stems) == {"vocals", "drums", "bass", "guitar"}
    assert track.source_id == spec.source_id and track.weight == 2.0 and track.silent == frozenset()
    audio, rate = track.stems["vocals"]()
    expected, _ = sf.read(musdb_root / "train" / track.name / "vocals.wav", dtype="float32")
    assert rate == 44100 and audio.dtype == np.float32
    np.testing.assert_allclose(audio, expected, atol=1e-6)
    assert not track.check_mixture  # MUSDB18 mixtures are not compared with their stems


def test_musdb_valid_tracks_in_training_split_are_refused(musdb_root, monkeypatch):
    """If musdb ever listed a valid track in the train split, opening the source fails."""
    import cunet.data.sources as sources

    real_open = sources.open_musdb

    def leaky_open(root, subsets="train", split="train", is_wav=False):
        return real_open(
            root, subsets, None if split == "train" else split, is_wav
        )  # train = everything

    monkeypatch.setattr(sources, "open_musdb", leaky_open)
    with pytest.raises(DataError, match="valid tracks found in the training split"):
        open_source(parse_data_spec(f"{musdb_root},wav"))


def test_unreadable_musdb_root_is_a_data_error(tmp_path):
    (tmp_path / "train" / "x").mkdir(parents=True)
    (tmp_path / "train" / "x.stem.mp4").write_bytes(b"not an mp4")
    with pytest.raises(DataError):
        open_source(parse_data_spec(str(tmp_path)))


# --------------------------------------------------------------------------- folder datasets


def test_folder_dataset_with_valid_folder(tmp_path):
    root = make_folder_dataset(
        tmp_path / "ds", ["song a", "song b", "song c"], ["held"], seconds=0.3
    )
    spec = parse_data_spec(f"{root},valid=2")  # a valid/ folder wins over valid=N
    splits = open_source(spec)
    assert names(splits["train"]) == ["song a", "song b", "song c"] and names(splits["valid"]) == [
        "held"
    ]
    track = splits["train"][0]
    assert set(track.stems) == set(STEMS) and track.mixture is None and track.origin == str(root)
    audio, rate = track.stems["bass"]()
    assert audio.shape == (int(0.3 * 44100), 2) and rate == 44100


def test_folder_dataset_without_train_folder_holds_out_a_tenth(tmp_path):
    for i in range(12):
        write_track(tmp_path / "flat" / f"t{i:02d}", {"vocals": noise(0.05, seed=i)})
    splits = open_source(parse_data_spec(str(tmp_path / "flat")), seed=1)
    assert len(splits["valid"]) == 1 and len(splits["train"]) == 11
    assert not set(names(splits["train"])) & set(names(splits["valid"]))
    # Seeded: the same seed holds out the same track; the split does not depend on listing order.
    assert names(open_source(parse_data_spec(str(tmp_path / "flat")), seed=1)["valid"]) == names(
        splits["valid"]
    )
    held = {
        names(open_source(parse_data_spec(str(tmp_path / "flat")), seed=s)["valid"])[0]
        for s in range(8)
    }
    assert len(held) > 1


def test_folder_dataset_valid_option(tmp_path):
    for i in range(5):
        write_track(tmp_path / "ds" / "train" / f"t{i}", {"vocals": noise(0.05, seed=i)})
    three = open_source(parse_data_spec(f"{tmp_path / 'ds'},valid=3"))
    assert len(three["valid"]) == 3 and len(three["train"]) == 2
    none = open_source(parse_data_spec(f"{tmp_path / 'ds'},valid=0"))
    assert len(none["train"]) == 5 and none["valid"] == []
    default = open_source(parse_data_spec(str(tmp_path / "ds")))
    assert len(default["valid"]) == 1  # a tenth, at least one
    with pytest.raises(DataError, match="cannot hold out 5 of the 5 tracks"):
        open_source(parse_data_spec(f"{tmp_path / 'ds'},valid=5"))


def test_single_track_folder_holds_nothing_out(tmp_path):
    write_track(tmp_path / "one" / "train" / "only", {"vocals": noise(0.05)})
    splits = open_source(parse_data_spec(str(tmp_path / "one")))
    assert names(splits["train"]) == ["only"] and splits["valid"] == []


def test_folder_track_contents(tmp_path):
    """Renames, silent markers, case, mixtures, mono and other rates; non-audio files are ignored."""
    folder = tmp_path / "ds" / "train" / "song"
    folder.mkdir(parents=True)
    sf.write(folder / "Vocals.FLAC", noise(0.1, 22050, 1), 22050)
    sf.write(folder / "guitar.flac", noise(0.2, 48000), 48000)
    sf.write(folder / "MIXTURE.wav", noise(0.2), 44100)
    (folder / "bass.silent").write_text("")
    (folder / "guitar.silent").write_text("")  # marks a stem the track holds: ignored
    (folder / "notes.txt").write_text("not audio")
    (folder / "cover.jpg").write_bytes(b"\xff\xd8")
    (folder / ".DS_Store").write_bytes(b"\0")
    (folder / "extras").mkdir()
    sf.write(
        folder / "extras" / "drums.wav", noise(0.1), 44100
    )  # sub-folders of a track are not stems
    write_track(tmp_path / "ds" / "train" / "other song", {"guitar": noise(0.1)})
    (tmp_path / "ds" / "train" / "empty").mkdir()  # no audio: not a track
    (tmp_path / "ds" / "train" / "readme.md").write_text("hi")

    splits = open_source(parse_data_spec(f"{tmp_path / 'ds'},rename=guitar:other,valid=0"))
    assert names(splits["train"]) == ["other song", "song"]
    track = next(t for t in splits["train"] if t.name == "song")
    assert set(track.stems) == {"vocals", "other"}
    assert track.silent == frozenset({"bass"})
    assert track.mixture is not None and track.check_mixture
    vocals, rate = track.stems["vocals"]()
    assert rate == 22050 and vocals.shape == (2205, 1)
    other, rate = track.stems["other"]()
    assert rate == 48000 and other.shape == (9600, 2)
    mixture, rate = track.mixture()
    assert rate == 44100 and mixture.shape == (8820, 2)


def test_tracks_pickle_with_their_readers(tmp_path, musdb_root):
    """Evaluation sends tracks to worker processes: folder and MUSDB18 tracks survive pickling, readers too."""
    import pickle

    root = make_folder_dataset(tmp_path / "ds", ["a"], ["b"], seconds=0.2)
    write_track(root / "valid" / "b", {}, mixture=noise(0.2))
    folder = open_source(parse_data_spec(str(root)))["valid"][0]
    musdb = open_source(parse_data_spec(f"{musdb_root},wav"))["valid"][0]
    for track in (folder, musdb):
        copy = pickle.loads(pickle.dumps(track))
        assert copy.name == track.name and set(copy.stems) == set(track.stems)
        for stem, reader in track.stems.items():
            np.testing.assert_array_equal(copy.stems[stem]()[0], reader()[0])
        np.testing.assert_array_equal(copy.mixture()[0], track.mixture()[0])


def test_silent_marker_is_renamed(tmp_path):
    folder = tmp_path / "ds" / "song"
    write_track(folder, {"vocals": noise(0.05)})
    (folder / "guitar.silent").write_text("")
    (track,) = open_source(parse_data_spec(f"{tmp_path / 'ds'},rename=guitar:other"))["train"]
    assert track.silent == frozenset({"other"})


def test_two_files_for_one_stem_is_an_error(tmp_path):
    folder = tmp_path / "ds" / "train" / "song"
    write_track(folder, {"vocals": noise(0.05)})
    write_track(folder, {"vocals": noise(0.05)}, ext="flac")
    with pytest.raises(DataError, match="two files for stem 'vocals'") as info:
        open_source(parse_data_spec(str(tmp_path / "ds")))
    assert "\n" not in str(info.value)
    # Renaming one stem onto another is the same mistake.
    other = tmp_path / "ds2" / "song"
    write_track(other, {"vocals": noise(0.05), "voice": noise(0.05)})
    with pytest.raises(DataError, match="two files for stem 'vocals'"):
        open_source(parse_data_spec(f"{tmp_path / 'ds2'},rename=voice:vocals"))


def test_names_that_share_a_file_name_are_an_error(tmp_path):
    # The spectrogram cache and augmented copies are stored under track_key(name): "a b" and "a_b"
    # would read each other's audio, whether both are training tracks or one is held out.
    root = tmp_path / "ds"
    write_track(root / "train" / "a b", {"vocals": noise(0.05)})
    write_track(root / "valid" / "a_b", {"vocals": noise(0.05)})
    with pytest.raises(DataError, match="tracks 'a b' and 'a_b' .* same file name 'a_b'") as info:
        open_source(parse_data_spec(str(root)))
    assert "\n" not in str(info.value)
    stems = tmp_path / "stems"
    write_track(stems / "train" / "song", {"lead vox": noise(0.05), "lead_vox": noise(0.05)})
    with pytest.raises(DataError, match="stems 'lead vox' and 'lead_vox' of track 'song'"):
        open_source(parse_data_spec(str(stems)))


# --------------------------------------------------------------------------- clip folders


def test_clip_folder(tmp_path):
    clips = tmp_path / "clips"
    write_track(clips / "a", {"x": noise(0.05)})
    write_track(clips / "b" / "deep", {"y": noise(0.05, channels=1)}, ext="flac")
    sf.write(clips / "top.wav", noise(0.05), 44100)
    (clips / "top.silent").write_text("")
    (clips / "list.txt").write_text("not audio")
    spec = parse_data_spec(f"{clips},stem=Vocals,weight=0.3")
    splits = open_source(spec)
    assert (
        names(splits["train"]) == ["a/x.wav", "b/deep/y.flac", "top.wav"] and splits["valid"] == []
    )
    for track in splits["train"]:
        assert (
            set(track.stems) == {"vocals"}
            and track.weight == 0.3
            and track.source_id == spec.source_id
        )
        assert track.silent == frozenset() and track.mixture is None
    audio, rate = splits["train"][1].stems["vocals"]()
    assert audio.shape == (2205, 1) and rate == 44100
    renamed = open_source(parse_data_spec(f"{clips},stem=voice,rename=voice:vocals"))["train"]
    assert all(set(t.stems) == {"vocals"} for t in renamed)
    held = open_source(parse_data_spec(f"{clips},stem=vocals,valid=1"))
    assert len(held["train"]) == 2 and len(held["valid"]) == 1


# --------------------------------------------------------------------------- several sources


def test_open_sources_merges_sources(tmp_path, musdb_root):
    make_folder_dataset(tmp_path / "ds", ["mine 1", "mine 2"], ["mine 3"], seconds=0.1)
    write_track(tmp_path / "clips", {"c1": noise(0.05), "c2": noise(0.05)})
    specs = [
        parse_data_spec(f"{musdb_root},wav"),
        parse_data_spec(str(tmp_path / "ds")),
        parse_data_spec(f"{tmp_path / 'clips'},stem=vocals"),
    ]
    splits = open_sources(specs)
    assert names(splits["train"]) == sorted([*TRAIN_NAMES, "mine 1", "mine 2", "c1.wav", "c2.wav"])
    assert names(splits["valid"]) == sorted([*VALID_NAMES, "mine 3"])
    assert len({t.source_id for t in splits["train"]}) == 3


def test_open_sources_refuses_cross_source_leaks(tmp_path):
    """A track that validates one source must not train through another."""
    make_folder_dataset(tmp_path / "a", ["x"], ["shared song"], seconds=0.1)
    make_folder_dataset(tmp_path / "b", ["shared song", "y"], ["z"], seconds=0.1)
    with pytest.raises(
        DataError, match="validation tracks also appear in the training data: \\['shared song'\\]"
    ):
        open_sources([parse_data_spec(str(tmp_path / "a")), parse_data_spec(str(tmp_path / "b"))])


def test_open_sources_errors(tmp_path):
    with pytest.raises(DataError, match="no training data given"):
        open_sources([])
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="no training tracks found under") as info:
        open_sources([parse_data_spec(str(tmp_path / "empty"))])
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="is not a directory"):
        open_sources([parse_data_spec(str(tmp_path / "missing"))])


def test_entries_named_like_stems_or_tracks_but_skipped_get_a_note(tmp_path, capsys):
    root = tmp_path / "ds"
    write_track(root / "train" / "song", {"drums": noise()})
    (root / "train" / "song" / "vocals.wav").mkdir()  # a directory where a stem file belongs
    (root / "train" / "song" / "bass.flac").symlink_to(tmp_path / "gone.flac")  # broken link
    (root / "train" / "song" / "other.silent").mkdir()
    (root / "train" / "song" / "notes").mkdir()  # not named like a stem: nothing to say
    sf.write(root / "train" / "loose.wav", noise(), 44100)  # a file where a track folder belongs
    write_track(root / "valid" / "held", {"drums": noise()})
    (root / "valid" / "held" / "vocals.wav").mkdir()
    notes: list[str] = []
    splits = open_source(parse_data_spec(str(root)), note=notes.append)
    song = root / "train" / "song"
    assert notes == [
        f"note: skipped '{root / 'train' / 'loose.wav'}': a file where a track folder "
        "(<track>/<stem>.wav) is expected; a folder of one-stem clips takes stem=NAME",
        f"note: skipped '{song / 'bass.flac'}': a broken link, pipe or device, not a stem file",
        f"note: skipped '{song / 'other.silent'}': a directory, not a stem file",
        f"note: skipped '{song / 'vocals.wav'}': a directory, not a stem file",
        f"note: skipped '{root / 'valid' / 'held' / 'vocals.wav'}': a directory, not a stem file",
    ]
    assert [list(t.stems) for t in splits["train"]] == [["drums"]]
    assert not splits["train"][0].silent
    # by default (training, evaluation) the notes go to stderr, one line each
    open_sources([parse_data_spec(str(root))])
    err = capsys.readouterr().err.splitlines()
    assert err == notes


def test_a_musdb_track_too_long_to_read_whole_is_refused_before_decoding(monkeypatch):
    class LongTrack:
        path, rate, samples = "long.stem.mp4", 44100, 44100 * 3600

        @property
        def audio(self):
            raise AssertionError("decoded")

    monkeypatch.setattr(audio_module, "MAX_WHOLE_SECONDS", 1200.0)
    with pytest.raises(AudioError, match=r"^long.stem.mp4: 3600 s long \(44100 Hz, 2 ch\)"):
        check_musdb_length(LongTrack())
    reader = _musdb_reader(LongTrack(), None)
    with pytest.raises(AudioError, match="may last 1200 s"):
        reader()

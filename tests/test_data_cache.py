"""cunet.data.cache: the on-disk STFT cache (layout, contents, reuse), mono and band-limited audio,
and the note about folder tracks whose own mixture differs from the sum of their stems."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import STEMS, synth_stems, write_track

from cunet.data import (
    build_cache,
    conform_rate_and_channels,
    open_source,
    parse_data_spec,
    stft_key,
    track_key,
)
from cunet.data.cache import MIXTURE_MISMATCH_DB, mixture_residual_db, stored_bins
from cunet.errors import AudioError, DataError


def spectrum(wave: np.ndarray, audio) -> np.ndarray:
    """Reference STFT of float [n_samples, n_channels] audio: complex [n_channels, n_frames, n_fft // 2 + 1]."""
    from cunet.nn.spectral import stft

    return stft(np.ascontiguousarray(wave.T), audio.n_fft, audio.hop_length).numpy()


def counting(track, calls: list[str]):
    """The track with readers that record every decode in `calls`."""

    def wrap(name, reader):
        def read():
            calls.append(f"{track.name}/{name}")
            return reader()

        return read

    return dataclasses.replace(track, stems={k: wrap(k, r) for k, r in track.stems.items()})


def folder_spec(root: Path, options: str = ",valid=0"):
    return parse_data_spec(f"{root}{options}")


# --------------------------------------------------------------------------- layout and contents


def test_cache_layout_and_contents(tmp_path, musdb_root, tiny_config):
    from cunet.nn.spectral import n_frames_for

    audio = tiny_config.audio
    spec = parse_data_spec(f"{musdb_root},wav")
    track = open_source(spec)["train"][0]
    (cached,) = build_cache([track], tmp_path, audio, progress=False)
    folder = tmp_path / stft_key(audio) / spec.source_id / track_key(track.name)
    assert cached.folder == folder and cached.name == track.name
    assert (
        cached.stems == tuple(sorted(STEMS))
        and cached.silent == frozenset()
        and cached.weight == 1.0
    )
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*(f"{s}.npy" for s in STEMS), "meta.json"]
    )
    meta = json.loads((folder / "meta.json").read_text())
    assert (
        meta["name"] == track.name
        and meta["stems"] == sorted(STEMS)
        and meta["n_frames"] == cached.n_frames
    )
    for name in STEMS:
        wave, rate = sf.read(musdb_root / "train" / track.name / f"{name}.wav", dtype="float32")
        stored = cached.load(name)
        assert isinstance(stored, np.memmap) and stored.dtype == np.complex64
        assert stored.shape == (
            2,
            n_frames_for(len(wave), audio.n_fft, audio.hop_length),
            audio.n_bins,
        )
        np.testing.assert_allclose(stored, spectrum(wave, audio)[..., : audio.n_bins], atol=1e-4)
        assert cached.has(name)
    assert not cached.has("guitar")
    mixture = cached.mixture(audio.n_bins, 2)
    np.testing.assert_allclose(mixture, sum(np.asarray(cached.load(s)) for s in STEMS), atol=1e-5)


def test_cache_decodes_each_track_once(tmp_path, musdb_root, tiny_config):
    audio = tiny_config.audio
    calls: list[str] = []
    tracks = [
        counting(t, calls) for t in open_source(parse_data_spec(f"{musdb_root},wav"))["train"]
    ]
    first = build_cache(tracks, tmp_path, audio, progress=False)
    assert sorted(calls) == sorted(f"{t.name}/{s}" for t in tracks for s in STEMS)
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}

    # Second build: nothing decoded, nothing rewritten, the same tracks.
    calls.clear()
    second = build_cache(tracks, tmp_path, audio, progress=False)
    assert calls == [] and second == first
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == mtimes

    # Other STFT parameters: a new key, decoded again; the first cache is left alone.
    other = dataclasses.replace(audio, n_fft=512, hop_length=256, n_bins=256)
    assert stft_key(other) != stft_key(audio)
    third = build_cache(tracks, tmp_path, other, progress=False)
    assert len(calls) == len(tracks) * len(STEMS)
    assert third[0].folder.parts[-3] == stft_key(other) and third[0].load("vocals").shape[-1] == 256
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporary files


def test_incomplete_or_changed_tracks_are_cached_again(tmp_path, tiny_config):
    audio = tiny_config.audio
    for name in ("a", "b"):
        write_track(tmp_path / "ds" / name, {"vocals": synth_stems(0.2, 44100, 0)["vocals"]})
    calls: list[str] = []
    tracks = [counting(t, calls) for t in open_source(folder_spec(tmp_path / "ds"))["train"]]
    cached = build_cache(tracks, tmp_path / "cache", audio, progress=False)
    (cached[0].folder / "meta.json").unlink()  # killed before the track was complete
    (cached[1].folder / "meta.json").write_text(
        json.dumps({"version": -1})
    )  # another cache version
    calls.clear()
    build_cache(tracks, tmp_path / "cache", audio, progress=False)
    assert sorted(calls) == ["a/vocals", "b/vocals"]

    write_track(tmp_path / "ds" / "a", {"bass": synth_stems(0.2, 44100, 0)["bass"]})  # a new stem
    calls.clear()
    tracks = [counting(t, calls) for t in open_source(folder_spec(tmp_path / "ds"))["train"]]
    again = build_cache(tracks, tmp_path / "cache", audio, progress=False)
    assert sorted(calls) == ["a/bass", "a/vocals"] and again[0].stems == ("bass", "vocals")


def test_stft_key_names_every_parameter(tiny_config):
    audio = tiny_config.audio
    keys = {
        stft_key(dataclasses.replace(audio, **change))
        for change in (
            {},
            {"sample_rate": 22050},
            {"n_channels": 1},
            {"n_fft": 512},
            {"hop_length": 64},
            {"n_bins": 64},
        )
    }
    assert len(keys) == 6


# --------------------------------------------------------------------------- mono, other rates, lengths


def test_mono_stored_as_one_channel(tmp_path, tiny_config):
    audio = tiny_config.audio
    stems = synth_stems(0.3, 44100, 1)
    vocals_mono = stems["vocals"][:, :1]
    write_track(tmp_path / "ds" / "song", {"vocals": vocals_mono, "drums": stems["drums"]})
    (track,) = open_source(folder_spec(tmp_path / "ds"))["train"]
    (cached,) = build_cache([track], tmp_path / "cache", audio, progress=False)
    vocals, drums = cached.load("vocals"), cached.load("drums")
    assert vocals.shape[0] == 1 and drums.shape[0] == 2 and vocals.shape[1:] == drums.shape[1:]
    wave = sf.read(tmp_path / "ds" / "song" / "vocals.wav", dtype="float32")[0][:, None]
    np.testing.assert_allclose(vocals, spectrum(wave, audio)[..., : audio.n_bins], atol=1e-4)
    # The mixture copies a mono stem to both channels of a stereo model.
    np.testing.assert_allclose(
        cached.mixture(audio.n_bins, 2), drums + np.concatenate([vocals, vocals]), atol=1e-6
    )

    # A mono model down-mixes stereo stems and stores one channel for everything.
    mono = dataclasses.replace(audio, n_channels=1)
    (cached_mono,) = build_cache([track], tmp_path / "cache", mono, progress=False)
    assert cached_mono.load("drums").shape[0] == cached_mono.load("vocals").shape[0] == 1
    drums_wave = sf.read(tmp_path / "ds" / "song" / "drums.wav", dtype="float32")[0]
    np.testing.assert_allclose(
        cached_mono.load("drums"),
        spectrum(drums_wave.mean(axis=1, keepdims=True), mono)[..., : mono.n_bins],
        atol=1e-4,
    )


def test_stored_bins(tiny_config):
    audio = tiny_config.audio  # 44.1 kHz, n_fft 256: 172 Hz per bin, 128 bins
    assert stored_bins(44100, audio) == stored_bins(48000, audio) == audio.n_bins
    assert stored_bins(22050, audio) == 66  # 11025 Hz is bin 64, plus two
    assert stored_bins(8000, audio) == 26
    assert stored_bins(44000, audio) == audio.n_bins  # never more than the model's bins


def test_low_rate_audio_stores_only_its_band(tmp_path, tiny_config):
    """22.05 kHz audio keeps the bins below its Nyquist frequency: nothing of value is dropped."""
    audio = tiny_config.audio
    folder = tmp_path / "ds" / "song"
    folder.mkdir(parents=True)
    low = synth_stems(0.5, 22050, 2)["drums"]  # noise bursts: energy up to 11 kHz
    high = synth_stems(0.3, 48000, 3)["vocals"]
    sf.write(folder / "drums.wav", low, 22050, subtype="FLOAT")
    sf.write(folder / "vocals.wav", high, 48000, subtype="FLOAT")
    (track,) = open_source(folder_spec(tmp_path / "ds"))["train"]
    (cached,) = build_cache([track], tmp_path / "cache", audio, progress=False)
    drums, vocals = cached.load("drums"), cached.load("vocals")
    assert (
        drums.shape[2] == stored_bins(22050, audio) < audio.n_bins
        and vocals.shape[2] == audio.n_bins
    )
    # Both stems span the longest one (0.5 s at the model's rate).
    assert drums.shape[:2] == vocals.shape[:2]
    resampled = conform_rate_and_channels(low, 22050, audio)
    assert resampled.shape == (22050, 2)  # 0.5 s at 44.1 kHz
    full = spectrum(resampled, audio)
    np.testing.assert_allclose(drums, full[..., : drums.shape[2]], atol=1e-4)
    dropped = np.sum(np.abs(full[..., drums.shape[2] :]) ** 2) / np.sum(np.abs(full) ** 2)
    assert dropped < 1e-3, dropped  # window leakage at the band edge of white noise: under -30 dB
    # The mixture and the sampler fill the band above with zeros.
    mixture = cached.mixture(audio.n_bins, 2)
    np.testing.assert_allclose(
        mixture[..., drums.shape[2] :], vocals[..., drums.shape[2] :], atol=1e-6
    )


def test_stems_of_different_lengths_are_padded(tmp_path, tiny_config):
    from cunet.nn.spectral import n_frames_for

    audio = tiny_config.audio
    stems = synth_stems(0.6, 44100, 4)
    write_track(
        tmp_path / "ds" / "song",
        {"bass": stems["bass"][: int(0.2 * 44100)], "other": stems["other"]},
    )
    (track,) = open_source(folder_spec(tmp_path / "ds"))["train"]
    (cached,) = build_cache([track], tmp_path / "cache", audio, progress=False)
    assert cached.n_frames == n_frames_for(int(0.6 * 44100), audio.n_fft, audio.hop_length)
    bass = np.asarray(cached.load("bass"))
    assert bass.shape == cached.load("other").shape
    tail = n_frames_for(int(0.2 * 44100), audio.n_fft, audio.hop_length)
    assert np.abs(bass[:, :tail]).max() > 0.1 and not np.abs(bass[:, tail + 1 :]).any()


def test_conform_rate_and_channels(tiny_config):
    audio = tiny_config.audio
    x = np.random.default_rng(0).standard_normal((22050, 1)).astype(np.float32)
    y = conform_rate_and_channels(x, 22050, audio)
    assert (
        y.shape == (44100, 1) and y.dtype == np.float32
    )  # mono stays mono: the sampler broadcasts it
    assert conform_rate_and_channels(x[:, 0], 44100, audio).shape == (22050, 1)
    stereo = np.stack([np.ones(100), 3 * np.ones(100)], axis=1).astype(np.float32)
    np.testing.assert_array_equal(conform_rate_and_channels(stereo, 44100, audio), stereo)
    mono = conform_rate_and_channels(stereo, 44100, dataclasses.replace(audio, n_channels=1))
    assert mono.shape == (100, 1) and np.allclose(mono, 2.0)
    with pytest.raises(DataError, match="3 channels"):
        conform_rate_and_channels(np.zeros((100, 3), np.float32), 44100, audio)


# --------------------------------------------------------------------------- own mixtures that differ


def test_mixture_residual_db():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((1000, 2)), rng.standard_normal((1000, 2))
    assert mixture_residual_db(a + b, [a, b]) == -200.0
    assert mixture_residual_db(1.1 * (a + b), [a, b]) == pytest.approx(
        10 * np.log10(0.01 / 1.21)
    )  # vs mixture
    assert mixture_residual_db(a, [a, b]) == pytest.approx(0.0, abs=0.2)  # b missing: as loud as a
    # Mono broadcasts, shorter arrays are zero-padded.
    left = a[:, :1]
    halves = [left[:500], np.pad(left[500:], [(500, 0), (0, 0)])]
    assert mixture_residual_db(np.concatenate([left, left], axis=1), halves) == -200.0
    assert mixture_residual_db(np.zeros((10, 2)), [np.zeros((10, 2))]) == -200.0
    assert (
        mixture_residual_db(np.zeros((10, 2)), [np.ones((10, 2))]) == 200.0
    )  # a silent mixture file


def write_mixture_dataset(
    root: Path, mixtures: dict[str, float | None], seconds: float = 0.3
) -> Path:
    """Tracks whose mixture file is gain * (sum of stems), or only the vocals (gain 0), or absent (None)."""
    for seed, (name, gain) in enumerate(mixtures.items()):
        stems = {
            k: v for k, v in synth_stems(seconds, 44100, seed).items() if k in ("vocals", "bass")
        }
        mixture = (
            None if gain is None else (gain * sum(stems.values()) if gain else stems["vocals"])
        )
        write_track(root / "train" / name, stems, mixture=mixture)
    return root


def test_note_when_own_mixtures_differ_from_stem_sums(tmp_path, tiny_config, capsys):
    root = write_mixture_dataset(
        tmp_path / "ds", {"a": 1.0, "b": 0.0, "c": 1.5, "d": None, "e": 1.01}
    )
    spec = folder_spec(root)
    tracks = open_source(spec)["train"]
    capsys.readouterr()
    cached = build_cache(tracks, tmp_path / "cache", tiny_config.audio, progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"note: 2 of 5 tracks in '{root}' have a mixture that differs from the sum of their stems "
        "(e.g. 'b'); training uses the sum of the stems"
    ]
    # Training uses the stems: no mixture is cached.
    assert all(t.stems == ("bass", "vocals") for t in cached) and not list(
        (tmp_path / "cache").rglob("mixture*")
    )
    residuals = {
        t.name: json.loads((t.folder / "meta.json").read_text())["mixture_residual_db"]
        for t in cached
    }
    assert (
        residuals["a"] < -60
        and residuals["e"] < MIXTURE_MISMATCH_DB < residuals["c"]
        and residuals["d"] is None
    )

    # The cached verdict is remembered: the same note again, with nothing decoded.
    calls: list[str] = []
    build_cache(
        [counting(t, calls) for t in tracks], tmp_path / "cache", tiny_config.audio, progress=False
    )
    assert calls == [] and capsys.readouterr().err.strip().splitlines() == err


def test_mixture_note_once_per_source(tmp_path, tiny_config, capsys):
    bad1 = write_mixture_dataset(tmp_path / "one", {"x": 0.0, "y": 0.0, "z": 1.0})
    bad2 = write_mixture_dataset(tmp_path / "two", {"p": 2.0})
    good = write_mixture_dataset(tmp_path / "three", {"q": 1.0, "r": None})
    tracks = [t for root in (bad1, good, bad2) for t in open_source(folder_spec(root))["train"]]
    capsys.readouterr()
    build_cache(tracks, tmp_path / "cache", tiny_config.audio, progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert (
        err[0].startswith(f"note: 2 of 3 tracks in '{bad1}' have a mixture")
        and "(e.g. 'x')" in err[0]
    )
    assert (
        err[1].startswith(f"note: 1 of 1 tracks in '{bad2}' have a mixture")
        and "(e.g. 'p')" in err[1]
    )


def test_edited_audio_is_decoded_again(tmp_path, tiny_config):
    """The cache keeps a fingerprint (sizes, modification times) of each track's files."""
    import os

    audio = tiny_config.audio
    write_track(tmp_path / "ds" / "a", {"vocals": synth_stems(0.2, 44100, 0)["vocals"]})
    calls: list[str] = []
    tracks = [counting(t, calls) for t in open_source(folder_spec(tmp_path / "ds"))["train"]]
    build_cache(tracks, tmp_path / "cache", audio, progress=False)
    calls.clear()
    build_cache(tracks, tmp_path / "cache", audio, progress=False)
    assert calls == []
    vocals = tmp_path / "ds" / "a" / "vocals.wav"
    write_track(
        tmp_path / "ds" / "a", {"vocals": synth_stems(0.2, 44100, 1)["vocals"]}
    )  # edited in place
    os.utime(vocals, ns=(vocals.stat().st_atime_ns, vocals.stat().st_mtime_ns + 10**9))
    tracks = [counting(t, calls) for t in open_source(folder_spec(tmp_path / "ds"))["train"]]
    cached = build_cache(tracks, tmp_path / "cache", audio, progress=False)
    assert calls == ["a/vocals"]
    expected = spectrum(synth_stems(0.2, 44100, 1)["vocals"], audio)[..., : audio.n_bins]
    np.testing.assert_allclose(cached[0].load("vocals"), expected, atol=1e-2)  # 16-bit files


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path, tiny_config, monkeypatch):
    import errno

    from cunet.data import cache

    write_track(tmp_path / "ds" / "a", {"vocals": synth_stems(0.2, 44100, 0)["vocals"]})
    tracks = open_source(folder_spec(tmp_path / "ds"))["train"]

    def full(fh, array):
        fh.write(b"\x93NUMPY partial")  # some bytes made it to disk before space ran out
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache.np, "save", full)
    with pytest.raises(DataError) as info:
        build_cache(tracks, tmp_path / "cache", tiny_config.audio, progress=False)
    message = str(info.value)
    assert "\n" not in message and "cannot cache track 'a'" in message
    assert "No space left on device" in message and "another --cache-dir" in message
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


def test_a_stem_too_long_to_cache_is_one_line_before_decoding(tmp_path, tiny_config, monkeypatch):
    """A long stem (hours of silence: a few MB of FLAC) is refused from its header, not decoded into
    gigabytes; the bound is lowered here so that a 40 s file stands for the hours."""
    from cunet.io import audio

    monkeypatch.setattr(audio, "MAX_WHOLE_SECONDS", 30.0)
    song = tmp_path / "ds" / "song"
    write_track(song, {"drums": synth_stems(0.5, 44100, 0)["drums"]})
    with sf.SoundFile(song / "vocals.flac", "w", 44100, 2, "PCM_16") as fh:
        for _ in range(40):
            fh.write(np.zeros((44100, 2), np.float32))
    read = audio.AudioReader.read

    def read_short(self):
        assert self.info.n_samples < 44100, "the long stem was decoded"
        return read(self)

    monkeypatch.setattr(audio.AudioReader, "read", read_short)
    tracks = open_source(folder_spec(tmp_path / "ds"))["train"]
    with pytest.raises(AudioError) as info:
        build_cache(tracks, tmp_path / "cache", tiny_config.audio, progress=False)
    assert str(info.value).startswith(f"{song / 'vocals.flac'}: 40 s long (44100 Hz, 2 ch); ")
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []

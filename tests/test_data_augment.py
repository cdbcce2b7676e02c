"""cunet.data.augment: pitch/tempo changes, seeded variants, and the rendered folder dataset.

Audio is synthesized here (sines and a folder dataset from conftest); nothing needs TensorFlow.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from conftest import make_folder_dataset

from cunet.data.augment import Variant, draw_variants, pitch_tempo, render_augmented
from cunet.data.sources import open_source, parse_data_spec
from cunet.errors import DataError

RATE = 22050


def sine(freq: float, seconds: float = 2.0, channels: int = 2) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.repeat((0.3 * np.sin(2 * np.pi * freq * t))[:, None], channels, 1).astype(np.float32)


def peak_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio[:, 0] * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * RATE / len(audio))


@pytest.mark.parametrize("semitones,tempo", [(2, 1.0), (-2, 1.0), (0, 1.1), (1, 0.9)])
def test_pitch_tempo_moves_pitch_and_length_and_keeps_level(semitones, tempo):
    audio = sine(440.0)
    out = pitch_tempo(audio, RATE, Variant(semitones, tempo))
    assert out.dtype == np.float32 and out.shape[1] == 2
    assert abs(len(out) - len(audio) / tempo) <= 0.002 * len(audio)
    assert peak_hz(out) == pytest.approx(440.0 * 2 ** (semitones / 12), rel=0.01)
    rms = lambda x: float(np.sqrt(np.mean(x**2)))  # noqa: E731
    assert rms(out) == pytest.approx(rms(audio), rel=1e-3)


def test_identity_variant_returns_the_input():
    audio = sine(300.0, 0.5)
    np.testing.assert_allclose(pitch_tempo(audio, RATE, Variant(0, 1.0)), audio, atol=1e-6)


@pytest.mark.parametrize("semitones,tempo", [(13, 1.0), (-13, 1.0), (1, 0.4), (1, 2.5)])
def test_variant_out_of_range_is_a_data_error(semitones, tempo):
    with pytest.raises(DataError):
        Variant(semitones, tempo)


def test_draw_variants_is_seeded_nonzero_and_distinct():
    first = draw_variants(4, seed=[0, 7])
    assert first == draw_variants(4, seed=[0, 7])
    assert first != draw_variants(4, seed=[1, 7])
    assert sorted(v.semitones for v in first) == [-2, -1, 1, 2]
    assert all(0.88 <= v.tempo <= 1.12 for v in first)
    with pytest.raises(DataError):
        draw_variants(0, seed=0)


def test_render_augmented_writes_a_folder_dataset_that_training_reads(tmp_path):
    root = make_folder_dataset(tmp_path / "src", ["a", "b"], ["v"], seconds=0.5, sample_rate=RATE)
    tracks = open_source(parse_data_spec(str(root)))["train"]
    out = tmp_path / "aug"
    folders = render_augmented(tracks, out, n_variants=2, seed=3, progress=False)
    assert len(folders) == 4 and all(f.is_dir() for f in folders)
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(f.name for f in folders)
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            f"{s}.wav" for s in tracks[0].stems
        )
    # the validation track is never copied, and the copies read back as training tracks
    assert not any(f.name.startswith("v~") for f in folders)
    copies = open_source(parse_data_spec(f"{out},valid=0"))
    assert len(copies["train"]) == 4 and not copies["valid"]
    audio, rate = copies["train"][0].stems["vocals"]()
    assert rate == RATE and audio.dtype == np.float32

    # a second run keeps what is there (resume) and changes nothing
    before = {f: (f / "vocals.wav").stat().st_mtime_ns for f in folders}
    assert render_augmented(tracks, out, n_variants=2, seed=3, progress=False) == folders
    assert before == {f: (f / "vocals.wav").stat().st_mtime_ns for f in folders}


def test_a_variant_drawn_twice_is_rendered_once(tmp_path):
    root = make_folder_dataset(tmp_path / "src", ["a"], seconds=0.5, sample_rate=RATE)
    tracks = open_source(parse_data_spec(f"{root},valid=0"))["train"]
    # two shifts (-1, +1) and a fixed tempo: the third variant repeats one of the first two
    assert len(set(draw_variants(3, seed=[0, 1], max_semitones=1, max_tempo=0.0))) == 2
    out = tmp_path / "aug"
    folders = render_augmented(
        tracks, out, n_variants=3, max_semitones=1, max_tempo=0.0, progress=False
    )
    assert len(folders) == 2 and len(set(folders)) == 2
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(f.name for f in folders)


def test_a_failed_copy_leaves_no_partial_folder(tmp_path):
    root = make_folder_dataset(tmp_path / "src", ["a"], seconds=0.5, sample_rate=RATE)
    (track,) = open_source(parse_data_spec(f"{root},valid=0"))["train"]
    sf.write(root / "train" / "a" / "vocals.wav", np.zeros((0, 2)), RATE)  # unreadable as a stem
    out = tmp_path / "aug"
    with pytest.raises(Exception):  # noqa: B017 - whatever the decoder raises
        render_augmented([track], out, n_variants=1, progress=False)
    assert list((out / "train").iterdir()) == []


def test_no_tracks_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no tracks"):
        render_augmented([], tmp_path)


def test_worker_processes_are_at_most_one_per_cpu_and_track(tmp_path, monkeypatch):
    from concurrent.futures import ProcessPoolExecutor

    from cunet import workers
    from cunet.data import augment

    sizes: list[int] = []

    def recording_pool(max_workers: int) -> ProcessPoolExecutor:
        sizes.append(max_workers)
        return ProcessPoolExecutor(max_workers)

    monkeypatch.setattr(augment, "ProcessPoolExecutor", recording_pool)
    monkeypatch.setattr(workers, "cpu_count", lambda: 2)  # whatever this machine has
    root = make_folder_dataset(tmp_path / "src", ["a", "b", "c"], seconds=0.3, sample_rate=RATE)
    tracks = open_source(parse_data_spec(f"{root},valid=0"))["train"]
    serial = render_augmented(tracks, tmp_path / "one", n_variants=1, progress=False)
    folders = render_augmented(tracks, tmp_path / "many", n_variants=1, progress=False, jobs=1000)
    assert sizes == [2] and [f.name for f in folders] == [f.name for f in serial]
    for a, b in zip(serial, folders, strict=True):  # the same copies (to BLAS rounding)
        one, many = (sf.read(f / "vocals.wav", dtype="float32")[0] for f in (a, b))
        np.testing.assert_allclose(one, many, atol=1e-5)


def test_the_script_caps_jobs_with_a_note_and_refuses_fewer_than_one(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from cunet.workers import cpu_count

    script = Path(__file__).resolve().parents[1] / "scripts" / "augment_stems.py"
    root = make_folder_dataset(tmp_path / "src", ["a", "b"], seconds=0.3, sample_rate=RATE)
    out = tmp_path / "aug"
    argv = [sys.executable, str(script), f"{root},valid=0", "--out", str(out), "--variants", "1"]
    done = subprocess.run([*argv, "--jobs", "1000"], capture_output=True, text=True, timeout=300)
    workers = min(cpu_count(), 2)
    assert done.returncode == 0 and done.stderr.splitlines()[0].startswith(
        f"note: --jobs 1000 capped at {workers} ("
    )
    assert len(list((out / "train").iterdir())) == 2
    refused = subprocess.run([*argv, "--jobs", "0"], capture_output=True, text=True, timeout=300)
    assert (refused.returncode, refused.stderr) == (2, "error: --jobs must be >= 1, got 0\n")

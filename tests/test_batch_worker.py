"""The batch worker alone (no Ray): `separate_file`'s bytes, published by renaming out of the song's
scratch folder, the rules for outputs already there, inputs fetched ahead, and errors as results."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import soundfile as sf
from conftest import synth_mixture
from test_robustness import partials

from cunet.batch.worker import SongTask, SongWorker, WorkerSettings
from cunet.jobs import separate_file
from cunet.settings import ChunkSettings

RATE = 44100
CHUNKS = ChunkSettings(1.0, 0.25)


@pytest.fixture
def worker(tiny_tflite_path: Path, tmp_path: Path) -> SongWorker:
    settings = WorkerSettings(
        scratch=str(tmp_path / "scratch"),
        model=str(tiny_tflite_path),
        instruments=("vocals", "drums"),
        chunks=CHUNKS,
        residual=True,
    )
    return SongWorker(settings)


def task(song: Path, out: Path, index: int = 0, replace: frozenset[str] = frozenset()) -> SongTask:
    keys = ("vocals", "drums", "no_vocals", "no_drums")
    outputs = {k: str(out / song.stem / f"{k}.wav") for k in keys}
    return SongTask(index, str(song), song.stem, "", outputs, replace, str(out / ".s" / str(index)))


def test_a_song_is_written_as_separate_file_writes_it(
    worker: SongWorker, tiny_tflite_path: Path, tmp_path: Path
) -> None:
    song = tmp_path / "song.wav"
    sf.write(song, synth_mixture(2.5), RATE)
    described = worker.describe()
    assert described["error"] is None and described["names"] == ["vocals", "drums"]
    assert described["model_instruments"] == ["vocals", "drums", "bass", "other"]
    assert described["load_seconds"] > 0 and described["peak_rss_mib"] > 0
    result = worker.separate(task(song, tmp_path / "out"))
    assert result["status"] == "ok" and result["error"] is None, result
    assert result["audio_seconds"] == pytest.approx(2.5) and result["seconds"] > 0
    from cunet.separator import Separator

    direct = separate_file(
        Separator.from_pretrained(tiny_tflite_path, chunks=CHUNKS),
        song,
        tmp_path / "direct",
        ["vocals", "drums"],
        residual=True,
        progress=False,
    )
    for key, path in direct.items():
        assert Path(result["outputs"][key]).read_bytes() == path.read_bytes()
    assert not (tmp_path / "out" / ".s" / "0").exists() and not partials(tmp_path / "out")


def test_outputs_already_there_are_kept_unless_the_task_may_replace_them(
    worker: SongWorker, tmp_path: Path
) -> None:
    song = tmp_path / "song.wav"
    sf.write(song, synth_mixture(1.0), RATE)
    out = tmp_path / "out"
    (out / "song").mkdir(parents=True)
    (out / "song" / "drums.wav").write_bytes(b"someone else's")
    result = worker.separate(task(song, out))
    assert result["status"] == "failed"
    assert "drums.wav' appeared while this job ran (another process?); kept it" in result["error"]
    assert (out / "song" / "drums.wav").read_bytes() == b"someone else's"
    assert not (out / "song" / "vocals.wav").exists()  # nothing of the song is published
    # a run that found drums.wav there from the start (a job stopped while it renamed) replaces it
    result = worker.separate(task(song, out, 1, frozenset({"drums"})))
    assert result["status"] == "ok" and sf.info(str(out / "song" / "drums.wav")).frames == RATE


def test_songs_that_fail_are_results_not_exceptions(worker: SongWorker, tmp_path: Path) -> None:
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    result = worker.separate(task(broken, tmp_path / "out"))
    assert result["status"] == "failed" and result["error"].startswith(f"{broken}: ")
    missing = worker.separate(task(tmp_path / "gone.wav", tmp_path / "out", 1))
    assert missing["status"] == "failed" and "gone.wav" in missing["error"]
    assert not (tmp_path / "out" / "broken").exists()


def test_the_next_song_is_fetched_while_one_is_separated(
    worker: SongWorker, tmp_path: Path
) -> None:
    first, second = tmp_path / "a.wav", tmp_path / "b.wav"
    for i, path in enumerate((first, second)):
        sf.write(path, synth_mixture(1.0, seed=i), RATE)
    out = tmp_path / "out"
    worker.separate(task(first, out, 0), upcoming=task(second, out, 1))
    assert set(worker.prefetched) == {1}
    assert worker.separate(task(second, out, 1))["status"] == "ok" and not worker.prefetched


def test_a_model_that_does_not_load_is_told_not_raised(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model")
    worker = SongWorker(WorkerSettings(scratch=str(tmp_path / "s"), model=str(bad)))
    error = worker.describe()["error"]
    assert error and "bad.tflite" in error and "\n" not in error
    result = worker.separate(task(tmp_path / "x.wav", tmp_path / "out"))
    assert result["status"] == "failed" and result["error"] == error


def test_a_shipped_model_is_a_private_copy_and_threads_are_set(
    tiny_tflite_path: Path, tmp_path: Path
) -> None:
    settings = WorkerSettings(
        scratch=str(tmp_path / "s"), model="/elsewhere/tiny.tflite", threads=1, chunks=CHUNKS
    )
    worker = SongWorker(settings, model_bytes=tiny_tflite_path.read_bytes())
    assert worker.describe()["error"] is None
    copies = list((tmp_path / "s").glob(f"model-{os.getpid()}-*/tiny.tflite"))
    assert len(copies) == 1 and copies[0].read_bytes() == tiny_tflite_path.read_bytes()
    assert (
        worker.separator.engine.num_threads == 1 and worker.separator.chunk_separator.threads == 1
    )

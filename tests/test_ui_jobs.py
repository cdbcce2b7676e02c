"""The session's songs and their queue (`cunet.ui.jobs`), with a stand-in separator that records its calls."""

from __future__ import annotations

import errno
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from cunet.errors import AudioError
from cunet.ui.failures import DISK_FULL
from cunet.ui.jobs import Jobs, Song


class FakeSeparator:
    config = SimpleNamespace(
        model=SimpleNamespace(instruments=("vocals", "drums", "bass", "other"))
    )

    """Writes one file per stem after `n_chunks` chunks of `delay` seconds, handing the stems (silence) to
    `on_block` chunk by chunk; records overlapping calls."""

    def __init__(self, n_chunks: int = 5, delay: float = 0.01, fail: dict | None = None) -> None:
        self.n_chunks, self.delay, self.fail = n_chunks, delay, fail or {}
        self.calls: list[str] = []
        self.running = 0
        self.most_running = 0
        self.lock = threading.Lock()

    def separate_song(
        self, path, outdir, instruments, *, residual, upload, on_files, on_block, on_chunk
    ):
        with self.lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            self.calls.append(Path(path).parent.name)
            if Path(path).parent.name in self.fail:
                raise self.fail[Path(path).parent.name](path)
            keys = [*instruments, *(f"no_{n}" for n in instruments if residual)]
            Path(outdir).mkdir()
            on_files({k: Path(outdir) / f".{k}.partial" for k in keys})
            edges = np.linspace(0, SAMPLES, self.n_chunks + 1).astype(int)
            for start, end in zip(edges[:-1], edges[1:], strict=True):
                time.sleep(self.delay)
                on_chunk()
                on_block(end - start)
            return {k: _touch(Path(outdir) / f"{k}.wav") for k in reversed(keys)}
        finally:
            with self.lock:
                self.running -= 1


SAMPLES = 441000  # make_song's: 10 s at 44.1 kHz


def fake_jobs(separator: FakeSeparator) -> Jobs:
    """Jobs whose song job is the stand-in's `separate_song` (looked up at each call)."""
    return Jobs(separator, separate=lambda sep, *args, **kwargs: sep.separate_song(*args, **kwargs))


def _touch(path: Path) -> Path:
    path.write_bytes(b"RIFF")
    return path


def make_song(
    root: Path, song_id: str, instruments=("vocals", "bass"), residual=False, n_chunks=5
) -> Song:
    folder = root / song_id
    folder.mkdir()
    (folder / "input.wav").write_bytes(b"data")
    return Song(
        id=song_id,
        name=f"{song_id}.wav",
        folder=folder,
        input=folder / "input.wav",
        instruments=tuple(instruments),
        residual=residual,
        duration=10.0,
        sample_rate=44100,
        n_channels=2,
        n_chunks=n_chunks,
    )


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_songs_are_separated_in_order_one_at_a_time(tmp_path):
    separator = FakeSeparator()
    jobs = fake_jobs(separator)
    songs = [make_song(tmp_path, f"s{i}", residual=i == 1) for i in range(4)]
    for song in songs:
        jobs.add(song)
    listed = jobs.songs()
    assert [s["state"] for s in listed] == ["queued"] * 4 and [
        s["queue_position"] for s in listed
    ] == [1, 2, 3, 4]
    jobs.start()
    wait_until(lambda: all(s["state"] == "done" for s in jobs.songs()))
    assert separator.calls == ["s0", "s1", "s2", "s3"] and separator.most_running == 1
    listed = jobs.songs()
    assert [s["stems"] for s in listed][:2] == [
        ["vocals", "bass"],
        ["vocals", "bass", "no_vocals", "no_bass"],
    ]
    assert all(
        s["progress"] == 1.0 and s["queue_position"] is None and s["separation_seconds"] >= 0
        for s in listed
    )
    assert not any(song.input.exists() for song in songs)  # the upload is deleted once separated
    jobs.close()
    assert list(tmp_path.iterdir()) == []


def test_progress_counts_chunks(tmp_path):
    gate = threading.Event()
    separator = FakeSeparator(n_chunks=4)
    separator.separate_song = _gated(separator.separate_song, gate)
    jobs = fake_jobs(separator)
    jobs.start()
    song = make_song(tmp_path, "p", n_chunks=4)
    jobs.add(song)
    wait_until(lambda: song.done_chunks == 2)
    assert jobs.song_json(song)["progress"] == 0.5 and jobs.song_json(song)["state"] == "separating"
    gate.set()
    wait_until(lambda: song.state == "done")
    jobs.close()


def _gated(separate_song, gate):
    def call(*args, on_chunk, **kwargs):
        count = [0]

        def tick():
            on_chunk()
            count[0] += 1
            if count[0] == 2:
                gate.wait(10)

        return separate_song(*args, on_chunk=tick, **kwargs)

    return call


def _disk_full(path):
    """A full disk as cunet's writers report it: their own message, raised from None."""
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise AudioError(f"cannot write '{Path(path).parent}/stems/x.wav': full") from None
    except AudioError as exc:
        return exc


def test_a_failure_is_shown_by_song_name_and_the_queue_goes_on(tmp_path, caplog, capfd):
    separator = FakeSeparator(
        fail={
            "bad": lambda path: AudioError(f"{path}: cannot decode audio (truncated)"),
            "bug": lambda path: RuntimeError("oops"),
            "full": _disk_full,
            "eio": lambda path: OSError(errno.EIO, "Input/output error", str(path)),
        }
    )
    jobs = fake_jobs(separator)
    jobs.start()
    for name in ("bad", "bug", "full", "eio", "good"):
        jobs.add(make_song(tmp_path, name))
    wait_until(lambda: all(s["state"] in ("done", "failed") for s in jobs.songs()))
    bad, bug, full, eio, good = jobs.songs()
    assert bad["state"] == "failed" and bad["error"] == "bad.wav: cannot decode audio (truncated)"
    assert bug["state"] == "failed" and bug["error"].startswith(
        "internal error while separating (RuntimeError)"
    )
    assert full["state"] == "failed" and full["error"] == DISK_FULL
    assert eio["error"] == "cannot read or write the song's files (Input/output error)"
    assert good["state"] == "done"
    jobs.close()
    # the terminal: one line for each failure that is the server's, no traceback
    logged = [r.getMessage() for r in caplog.records if r.name == "cunet.ui"]
    assert len(logged) == 3 and not any("\n" in line for line in logged)
    assert logged[0].startswith(
        "cunet ui: 'bug.wav' failed: internal error: RuntimeError: oops (at "
    )
    assert logged[1].startswith(f"cunet ui: 'full.wav' failed: {DISK_FULL}")
    assert "Traceback" not in capfd.readouterr().err


def test_removal_stops_a_running_song_at_the_next_chunk_and_deletes_its_files(tmp_path):
    separator = FakeSeparator(n_chunks=1000, delay=0.01)
    jobs = fake_jobs(separator)
    jobs.start()
    running, waiting, last = (
        make_song(tmp_path, n, n_chunks=1000) for n in ("running", "waiting", "last")
    )
    for song in (running, waiting, last):
        jobs.add(song)
    wait_until(lambda: running.done_chunks > 2)
    assert jobs.remove("waiting") and not waiting.folder.exists()
    start = time.monotonic()
    assert jobs.remove("running")
    assert time.monotonic() - start < 1.0 and not running.folder.exists()
    assert running.done_chunks < 1000 and running.state == "separating"  # stopped, never finished
    assert not jobs.remove("running") and jobs.get("running") is None
    wait_until(lambda: last.state == "separating")
    assert separator.calls == ["running", "last"]
    jobs.close()  # stops the last one too
    assert list(tmp_path.iterdir()) == [] and separator.running == 0


def test_a_removed_song_ends_its_listeners_and_a_finished_one_drops_its_live_copy(tmp_path):
    separator = FakeSeparator(n_chunks=200, delay=0.01)
    jobs = fake_jobs(separator)
    jobs.start()
    removed, kept = make_song(tmp_path, "removed", n_chunks=200), make_song(tmp_path, "kept")
    jobs.add(removed)
    jobs.add(kept)
    assert removed.live is not None and removed.live.state == "waiting"
    wait_until(lambda: removed.live.ready >= 1)
    jobs.remove("removed")
    assert removed.live.state == "failed"
    wait_until(lambda: kept.state == "done")
    assert kept.live.state == "done" and kept.live.ready == kept.live.n_frames
    assert kept.live.files == kept.stems  # the published stem files serve it now
    assert jobs.song_json(kept)["keys"] == ["vocals", "bass"]
    jobs.close()

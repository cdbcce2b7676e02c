"""The session's songs and their queue (`cunet.ui.jobs`), with a stand-in separator that records its calls."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from cunet.errors import AudioError
from cunet.ui.jobs import Jobs, Song


class FakeSeparator:
    """Writes one file per stem after `n_chunks` chunks of `delay` seconds; records overlapping calls."""

    def __init__(self, n_chunks: int = 5, delay: float = 0.01, fail: dict | None = None) -> None:
        self.n_chunks, self.delay, self.fail = n_chunks, delay, fail or {}
        self.calls: list[str] = []
        self.running = 0
        self.most_running = 0
        self.lock = threading.Lock()

    def separate_file(
        self, path, outdir, instruments, output, *, residual, progress, filename, on_chunk
    ):
        with self.lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            self.calls.append(Path(path).parent.name)
            if Path(path).parent.name in self.fail:
                raise self.fail[Path(path).parent.name](path)
            for _ in range(self.n_chunks):
                time.sleep(self.delay)
                on_chunk()
            Path(outdir).mkdir()
            keys = [*instruments, *(f"no_{n}" for n in instruments if residual)]
            return {
                k: _touch(Path(outdir) / filename.format(stem=k, ext=output.fmt))
                for k in reversed(keys)
            }
        finally:
            with self.lock:
                self.running -= 1


def fake_jobs(separator: FakeSeparator) -> Jobs:
    """Jobs whose file job is the stand-in's `separate_file` (looked up at each call)."""
    return Jobs(separator, separate=lambda sep, *args, **kwargs: sep.separate_file(*args, **kwargs))


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
    separator.separate_file = _gated(separator.separate_file, gate)
    jobs = fake_jobs(separator)
    jobs.start()
    song = make_song(tmp_path, "p", n_chunks=4)
    jobs.add(song)
    wait_until(lambda: song.done_chunks == 2)
    assert jobs.song_json(song)["progress"] == 0.5 and jobs.song_json(song)["state"] == "separating"
    gate.set()
    wait_until(lambda: song.state == "done")
    jobs.close()


def _gated(separate_file, gate):
    def call(*args, on_chunk, **kwargs):
        count = [0]

        def tick():
            on_chunk()
            count[0] += 1
            if count[0] == 2:
                gate.wait(10)

        return separate_file(*args, on_chunk=tick, **kwargs)

    return call


def test_a_failure_is_shown_by_song_name_and_the_queue_goes_on(tmp_path):
    separator = FakeSeparator(
        fail={
            "bad": lambda path: AudioError(f"{path}: cannot decode audio (truncated)"),
            "bug": lambda path: RuntimeError("oops"),
        }
    )
    jobs = fake_jobs(separator)
    jobs.start()
    for name in ("bad", "bug", "good"):
        jobs.add(make_song(tmp_path, name))
    wait_until(lambda: all(s["state"] in ("done", "failed") for s in jobs.songs()))
    bad, bug, good = jobs.songs()
    assert bad["state"] == "failed" and bad["error"] == "bad.wav: cannot decode audio (truncated)"
    assert bug["state"] == "failed" and bug["error"].startswith(
        "internal error while separating (RuntimeError)"
    )
    assert good["state"] == "done"
    jobs.close()


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

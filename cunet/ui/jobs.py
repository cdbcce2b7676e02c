"""The songs of a session and the queue that separates them, one at a time, in a background thread.

Each song lives in its own folder under the session's work folder: the upload (`input<ext>`, deleted once
separated) and `stems/<key>.wav` (keys: instruments, and `no_<instrument>` with the residual), written by
`cunet.jobs.separate_file` (atomic: the stems appear only when all are complete). Removing a song stops its
separation at the next chunk and deletes its folder; `close` does so for all.
"""

from __future__ import annotations

import queue
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CunetError, one_line
from ..io.output import OutputSettings
from ..jobs import separate_file

__all__ = ["Jobs", "Song"]

STATES = ("queued", "separating", "done", "failed")


class _Cancelled(Exception):
    """Raised from the progress callback to stop the separation of a removed song."""


@dataclass
class Song:
    """One uploaded song. name: the browser's file name (shown only). duration in seconds; n_chunks: the
    separation's chunks (progress = done_chunks / n_chunks). stems: {key: wav path} once done."""

    id: str
    name: str
    folder: Path
    input: Path
    instruments: tuple[str, ...]
    residual: bool
    duration: float
    sample_rate: int
    n_channels: int
    n_chunks: int
    state: str = "queued"
    done_chunks: int = 0
    error: str | None = None
    stems: dict[str, Path] = field(default_factory=dict)
    queued_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    finished_at: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    idle: threading.Event = field(default_factory=threading.Event)  # set when no thread works on it

    @property
    def progress(self) -> float:
        """0..1 of the separation."""
        if self.state == "done":
            return 1.0
        return min(1.0, self.done_chunks / self.n_chunks) if self.n_chunks else 0.0

    def to_json(self, queue_position: int | None = None) -> dict[str, Any]:
        """What the page shows: state, progress, the stems (keys) and timings (seconds)."""
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "progress": round(self.progress, 4),
            "queue_position": queue_position,
            "error": self.error,
            "duration": round(self.duration, 3),
            "sample_rate": self.sample_rate,
            "channels": self.n_channels,
            "instruments": list(self.instruments),
            "residual": self.residual,
            "stems": list(self.stems),
            "separation_seconds": (
                round(self.finished_at - self.started_at, 3)
                if self.finished_at and self.started_at and self.state == "done"
                else None
            ),
        }


class Jobs:
    """The session's songs and the worker separating them in order with `separator` (a `cunet.Separator`).

    start() launches the worker thread; add(song) queues a song; remove(id) cancels and deletes it; close()
    stops the worker and deletes every song's folder. separate: the file job, called as
    `separate(separator, path, outdir, instruments, output, residual=, progress=, filename=, on_chunk=)`
    (default `cunet.jobs.separate_file`).
    """

    def __init__(
        self, separator: Any, separate: Callable[..., dict[str, Path]] = separate_file
    ) -> None:
        self.separator = separator
        self._separate_file = separate
        self._songs: dict[str, Song] = {}
        self._order: list[str] = []
        self._lock = threading.Lock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._work, name="cunet-ui-separation", daemon=True
            )
            self._thread.start()

    def add(self, song: Song) -> None:
        with self._lock:
            self._songs[song.id] = song
            self._order.append(song.id)
            song.idle.set()
        self._queue.put(song.id)

    def get(self, song_id: str) -> Song | None:
        with self._lock:
            return self._songs.get(song_id)

    def songs(self) -> list[dict[str, Any]]:
        """Every song's `to_json`, in upload order, with the queue position of the waiting ones (1 = next)."""
        with self._lock:
            songs = [self._songs[i] for i in self._order]
        waiting = [s.id for s in songs if s.state == "queued"]
        return [s.to_json(waiting.index(s.id) + 1 if s.id in waiting else None) for s in songs]

    def song_json(self, song: Song) -> dict[str, Any]:
        return next((s for s in self.songs() if s["id"] == song.id), song.to_json())

    def remove(self, song_id: str, timeout: float = 30.0) -> bool:
        """Forget a song, stop its separation (at the next chunk) and delete its folder; False if unknown.
        Blocks until the worker has let go of the song's files (at most `timeout` seconds)."""
        with self._lock:
            song = self._songs.pop(song_id, None)
            if song is None:
                return False
            self._order.remove(song_id)
            song.cancel.set()
        song.idle.wait(timeout)
        shutil.rmtree(song.folder, ignore_errors=True)
        return True

    def close(self) -> None:
        """Stop the worker (cancelling the song it separates) and delete every song's folder."""
        with self._lock:
            ids = list(self._songs)
        for song_id in ids:
            self.remove(song_id)
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    def _work(self) -> None:
        while True:
            song_id = self._queue.get()
            if song_id is None:
                return
            with self._lock:
                song = self._songs.get(song_id)
                if song is None or song.cancel.is_set():
                    continue
                song.state, song.started_at = "separating", time.monotonic()
                song.idle.clear()
            try:
                self._separate(song)
            finally:
                song.idle.set()

    def _separate(self, song: Song) -> None:
        def tick() -> None:
            if song.cancel.is_set():
                raise _Cancelled
            song.done_chunks += 1

        try:
            stems = self._separate_file(
                self.separator,
                song.input,
                song.folder / "stems",
                list(song.instruments),
                OutputSettings("wav"),
                residual=song.residual,
                progress=False,
                filename="{stem}.{ext}",
                on_chunk=tick,
            )
        except _Cancelled:
            return
        except CunetError as exc:
            song.error = (
                one_line(str(exc)).replace(str(song.input), song.name).replace(str(song.folder), "")
            )
            song.state = "failed"
            return
        except Exception as exc:  # noqa: BLE001 - a bug must not stop the queue; it is shown and logged
            traceback.print_exc(file=sys.stderr)
            song.error = f"internal error while separating ({type(exc).__name__}); see the terminal"
            song.state = "failed"
            return
        finally:
            song.input.unlink(missing_ok=True)
        order = [*song.instruments, *(f"no_{n}" for n in song.instruments)]
        song.stems = {key: Path(stems[key]) for key in order if key in stems}
        song.finished_at = time.monotonic()
        song.state = "done"

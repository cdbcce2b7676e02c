"""The songs of a session and the queue that separates them, one at a time, in a background thread.

Each song lives in its own folder under the session's work folder: the upload (`input<ext>`, deleted once
separated; it may still be arriving while it is separated, `growing.Upload`), `stems/<key>.wav` (keys:
instruments, and `no_<instrument>` with the residual), written by `separation.separate_song` as
`cunet separate` writes them (atomic: the stems appear only when all are complete; meanwhile the page plays
from their partial files, `live.LivePcm`). Removing a song stops its separation
at the next chunk (or its upload) and deletes its folder; `close` does so for all.
"""

from __future__ import annotations

import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CunetError, one_line
from ..jobs import output_paths
from .failures import DISK_FULL, LOG, describe, disk_full
from .growing import Upload
from .live import LivePcm
from .separation import FILENAME, separate_song

__all__ = ["Jobs", "Song"]

STATES = ("queued", "separating", "done", "failed")


class _Cancelled(Exception):
    """Raised from the progress callback to stop the separation of a removed song."""


@dataclass
class Song:
    """One uploaded song. name: the browser's file name (shown only). duration in seconds; n_samples: its
    length in samples (0: from the duration); n_chunks: the separation's chunks (progress = done_chunks /
    n_chunks). stems: {key: wav path} once done. upload: the upload while it arrives. keys (the stems it is
    separated into, in order) and live (the stems as they are separated) are set by `Jobs.add`."""

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
    n_samples: int = 0
    upload: Upload | None = None
    keys: list[str] = field(default_factory=list)
    live: LivePcm | None = None

    def __post_init__(self) -> None:
        self.n_samples = self.n_samples or round(self.duration * self.sample_rate)

    @property
    def output_bytes(self) -> int:
        """The size of its stems, in bytes (16-bit wav)."""
        return len(self.keys) * self.n_samples * self.n_channels * 2

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
            "keys": self.keys,
            "n_samples": self.n_samples,
            "uploaded": round(self.upload.fraction, 4) if self.upload is not None else 1.0,
            "separation_seconds": (
                round(self.finished_at - self.started_at, 3)
                if self.finished_at and self.started_at and self.state == "done"
                else None
            ),
        }


class Jobs:
    """The session's songs and the worker separating them in order with `separator` (a `cunet.Separator`).

    start() launches the worker thread; add(song) queues a song; remove(id) cancels and deletes it; close()
    stops the worker and deletes every song's folder.
    separate: the song job, called as `separate(separator, path, outdir, instruments, residual=, upload=,
    on_block=, on_chunk=)` (default `separation.separate_song`).
    """

    def __init__(
        self, separator: Any, separate: Callable[..., dict[str, Path]] = separate_song
    ) -> None:
        self.separator = separator
        self._separate_song = separate
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
        # the stems' keys in the order `cunet separate` writes them: instruments, then their residuals
        outputs = output_paths(
            self.separator,
            song.input,
            song.folder,
            song.instruments,
            "wav",
            song.residual,
            FILENAME,
        )
        song.keys = list(outputs)
        if song.live is None:
            song.live = LivePcm(len(song.keys), song.n_channels, song.n_samples)
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
        if song.upload is not None:
            song.upload.fail(_Cancelled())  # a read waiting for its bytes returns
        if song.live is not None:
            song.live.fail()
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

        live = song.live
        assert live is not None  # made by `add`
        try:
            stems = self._separate_song(
                self.separator,
                song.input,
                song.folder / "stems",
                list(song.instruments),
                residual=song.residual,
                upload=song.upload,
                on_files=live.start,
                on_block=live.advance,
                on_chunk=tick,
            )
            song.stems = {key: Path(stems[key]) for key in song.keys if key in stems}
            live.finish(song.stems)
        except BaseException as exc:
            live.fail()
            if song.cancel.is_set() or isinstance(exc, _Cancelled):
                return
            self._failed(song, exc)
            return
        finally:
            song.input.unlink(missing_ok=True)
        song.finished_at = time.monotonic()
        song.state = "done"

    def _failed(self, song: Song, exc: BaseException) -> None:
        """Record why the song's separation failed: its message, or the disk, or a bug (logged)."""
        if isinstance(exc, (CunetError, OSError)):
            if disk_full(exc, song.folder, song.output_bytes):
                song.error = DISK_FULL
                LOG.error(
                    "cunet ui: '%s' failed: %s [%s]", one_line(song.name), DISK_FULL, describe(exc)
                )
            elif isinstance(exc, OSError):
                song.error = f"cannot read or write the song's files ({exc.strerror or exc})"
                LOG.error("cunet ui: '%s' failed: %s", one_line(song.name), describe(exc))
            else:
                song.error = one_line(str(exc)).replace(str(song.input), song.name)
            song.error = song.error.replace(str(song.folder), "")
        elif isinstance(exc, Exception):  # a bug must not stop the queue; it is shown and logged
            LOG.error(
                "cunet ui: '%s' failed: internal error: %s", one_line(song.name), describe(exc)
            )
            song.error = f"internal error while separating ({type(exc).__name__}); see the terminal"
        else:  # KeyboardInterrupt, SystemExit: not the song's failure
            raise exc
        song.state = "failed"

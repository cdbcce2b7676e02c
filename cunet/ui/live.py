"""A song's stems on their way to the page while they are separated: PCM frames, in one HTTP response.

The separation writes each stem to its 16-bit wav file block by block, as soon as the block's chunk is separated
(`separation.separate_song`: the partial files that are published, renamed, once every stem is complete). These
files are the live copy: `LivePcm` learns where they are (`start`) and how far they are written (`advance`), and
its readers read the frames from them (`WavFrames`), then from the published stems. So the page plays exactly
the samples it downloads, and the live path costs no copy, conversion or disk of its own.

`GET /api/songs/{id}/live` (`LivePcm.response_body`) sends, in one chunked response:
- a header: uint32 n, then n bytes of JSON {"id", "sample_rate", "channels", "n_samples", "keys", "frame",
  "format"};
- frames in order: uint32 start (the first sample's index), uint32 count (samples per channel), then the
  samples [len(keys), channels, count] (planar: each stem's channels one after the other), little endian, in
  the format asked for (PCM_FORMATS): "s16" (the files' 16-bit integers) or "f32" (floats, x / 32768: what
  decoding the stem files gives, ready for the browser's audio buffers without a loop over the samples), each
  frame as soon as it is separated. The response ends after the last frame, or early if the song fails or is
  removed. Frames hold FRAME samples, the last one the rest.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import struct
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FRAME", "PCM_FORMATS", "LivePcm", "WavFrames", "data_offset"]

FRAME = (
    1 << 16
)  # samples per frame: 1.49 s at 44.1 kHz, 512 KiB of 16-bit samples for four stereo stems
PCM_FORMATS = ("s16", "f32")
_HEAD = struct.Struct("<II")  # a frame's start sample and sample count


class LivePcm:
    """How far one song's stems (`n_keys` of `n_channels` channels, `n_samples` samples each) are separated.

    The separating thread calls `start(files)` with the stems' files being written ({key: path}, in the
    frames' order), `advance(n)` each time n more samples of every stem are written, then `finish(stems)` with
    the published files, or `fail()`. `ready` frames can be read; `state` is "waiting", "running", "done" or
    "failed". Readers (`response_body`) wait on the event loop for new frames.
    """

    def __init__(self, n_keys: int, n_channels: int, n_samples: int) -> None:
        self.n_keys, self.n_channels, self.n_samples = n_keys, n_channels, n_samples
        self.n_frames = max(1, math.ceil(n_samples / FRAME))
        self.state = "waiting"
        self.ready = 0
        self.written = 0
        self.files: dict[str, Path] = {}
        self._version = 0
        self._wakers: set[Callable[[], None]] = set()
        self._lock = threading.Lock()

    def start(self, files: Mapping[str, Path]) -> None:
        self.files = dict(files)
        self._changed("running")

    def advance(self, n: int) -> None:
        """n more samples of every stem are in the files (written, visible to other readers)."""
        self.written += n
        ready = min(self.n_frames, self.written // FRAME)
        if ready > self.ready:
            with self._lock:
                self.ready = ready
            self._changed("running")

    def finish(self, stems: Mapping[str, Path]) -> None:
        """Every stem is complete and published at `stems` ({key: path})."""
        if self.written != self.n_samples:
            raise RuntimeError(f"live copy: {self.written} of {self.n_samples} samples written")
        with self._lock:
            self.files = dict(stems)
            self.ready = self.n_frames
        self._changed("done")

    def fail(self) -> None:
        """The song failed or is removed: readers stop (any thread may call it)."""
        self._changed("failed")

    def frame_samples(self, k: int) -> int:
        return min(FRAME, self.n_samples - k * FRAME)

    def _changed(self, state: str) -> None:
        with self._lock:
            if self.state not in (
                "done",
                "failed",
            ):  # a removed song's last block does not revive it
                self.state = state
            self._version += 1
            wakers = list(self._wakers)
        for wake in wakers:
            wake()

    async def _wait(self, seen: int) -> None:
        """Return once anything changed since version `seen`."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(event.set)

        with self._lock:
            if self._version != seen:
                return
            self._wakers.add(wake)
        try:
            await event.wait()
        finally:
            with self._lock:
                self._wakers.discard(wake)

    def header(self, info: Mapping[str, Any]) -> bytes:
        text = json.dumps({**info, "frame": FRAME}).encode()
        return struct.pack("<I", len(text)) + text

    async def response_body(
        self, info: Mapping[str, Any], start: int, threads: Callable[..., Any], fmt: str = "s16"
    ) -> AsyncIterator[bytes]:
        """The header (JSON `info`), then the frames from frame `start` on as they are separated, in format
        `fmt` (PCM_FORMATS). threads(func, *args): runs a blocking read off the event loop (e.g. starlette's
        run_in_threadpool)."""
        yield self.header({**info, "format": fmt})
        source: WavFrames | None = None
        k = start
        try:
            while k < self.n_frames:
                with self._lock:
                    seen, ready, state, files = self._version, self.ready, self.state, self.files
                if k < ready:
                    if source is None:
                        try:
                            source = await threads(WavFrames, list(files.values()), self.n_samples)
                        except FileNotFoundError:  # published meanwhile (renamed): read those
                            if state in ("done", "failed"):
                                raise
                            await self._wait(seen)
                            continue
                    yield await threads(source.frame, k, fmt)
                    k += 1
                elif state in ("failed", "done"):
                    return
                else:
                    await self._wait(seen)
        finally:
            if source is not None:
                source.close()


class WavFrames:
    """Frames of 16-bit wav files (one per stem, in the frames' order) of `n_samples` samples, read as raw
    samples after each file's header: the partial files while they are written, then the published ones (an
    open file stays readable once renamed)."""

    def __init__(self, paths: Sequence[Path], n_samples: int) -> None:
        self.n_samples = n_samples
        self._files: list[tuple[int, int, int]] = []  # (fd, data offset, channels)
        try:
            for path in paths:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                self._files.append((fd, 0, 0))
                offset, channels = data_offset(os.pread(fd, 1 << 16, 0))
                self._files[-1] = (fd, offset, channels)
        except BaseException:
            self.close()
            raise

    def read(self, k: int) -> np.ndarray:
        """int16 [n_stems, channels, count] of frame k."""
        count = min(FRAME, self.n_samples - k * FRAME)
        planes = []
        for fd, offset, channels in self._files:
            size = count * channels * 2
            data = os.pread(fd, size, offset + k * FRAME * channels * 2)
            if len(data) != size:
                raise OSError(f"a stem file is short ({len(data)} of {size} bytes)")
            planes.append(np.frombuffer(data, "<i2").reshape(count, channels).T)
        return np.stack(planes)

    def frame(self, k: int, fmt: str) -> bytes:
        """Frame k as the response sends it: its head, then the samples in format `fmt`."""
        pcm = self.read(k)
        if fmt == "f32":
            samples = np.multiply(pcm, np.float32(1 / 32768), dtype="<f4")
        else:
            samples = np.ascontiguousarray(pcm, "<i2")
        return _HEAD.pack(k * FRAME, pcm.shape[2]) + samples.tobytes()

    def close(self) -> None:
        for fd, _, _ in self._files:
            os.close(fd)
        self._files = []


def data_offset(head: bytes) -> tuple[int, int]:
    """(where the samples start, channels) of a 16-bit PCM wav from its first bytes; OSError otherwise. A
    file being written has its sizes still zero: only the chunks before the samples are read."""
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise OSError("not a wav file")
    position, channels = 12, 0
    while position + 8 <= len(head):
        chunk, size = (
            head[position : position + 4],
            struct.unpack("<I", head[position + 4 : position + 8])[0],
        )
        if chunk == b"fmt ":
            tag, channels = struct.unpack("<HH", head[position + 8 : position + 12])
            bits = struct.unpack("<H", head[position + 22 : position + 24])[0]
            if tag not in (1, 0xFFFE) or bits != 16:
                raise OSError("not a 16-bit PCM wav file")
        elif chunk == b"data":
            if not channels:
                raise OSError("a wav file without a format")
            return position + 8, channels
        position += 8 + size + (size & 1)
    raise OSError("no samples in the wav file's first 64 KiB")

"""An upload read while it arrives: formats soundfile decodes (wav, flac, ogg, aiff, ...) are separated as their
bytes come in, so a large file does not wait for its last byte before its first chunk is separated.

`Upload` is the state of one upload being written to disk (bytes received of the size its Content-Length
declared; complete or failed), shared by the request receiving it (the event loop) and the threads reading it.
`UploadReader` reads it through soundfile's virtual I/O over a `GrowingFile`: while the header is parsed, reads
return only what has arrived (a header that is not there yet makes the open fail, and the caller waits for the
whole file instead); afterwards each read waits for its bytes. The samples are those `cunet.io.audio.AudioReader`
decodes from the finished file: the same decoder over the same bytes, and the length the header declares.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AudioError, CunetError
from ..io.audio import MAX_RATE, MIN_RATE, AudioInfo

__all__ = ["NotStreamable", "Upload", "UploadReader"]

# Formats whose length is in their header: read while arriving, they decode as the finished file does. Others
# (ogg: its length is found at its end) wait for their last byte.
STREAMED_FORMATS = frozenset({"WAV", "WAVEX", "RF64", "W64", "AIFF", "CAF", "FLAC"})
_UNKNOWN_LENGTH = 1 << 62  # libsndfile's frame count of a flac whose header does not say its length


class NotStreamable(Exception):
    """The upload cannot be decoded while it arrives (not a format soundfile reads, or its header has not
    arrived yet): read it once it is complete."""


class Upload:
    """An upload being written to `path`, `size` bytes long when complete (its Content-Length).

    The receiver calls `grew(n)` after each flushed write (n: bytes on disk so far), then `complete()` or
    `fail(error)`; readers call `wait(end)` for the bytes before `end`. `fail` also stops readers of a song
    that is removed while it uploads."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self.received = 0
        self.error: BaseException | None = None
        self.done = False
        self._cond = threading.Condition()

    @property
    def fraction(self) -> float:
        """0..1 of the bytes received."""
        return 1.0 if self.done else min(1.0, self.received / self.size) if self.size else 0.0

    def grew(self, received: int) -> None:
        with self._cond:
            self.received = received
            self._cond.notify_all()

    def complete(self) -> None:
        with self._cond:
            self.done = True
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            if not self.done and self.error is None:
                self.error = error
            self._cond.notify_all()

    def wait(self, end: int) -> int:
        """Block until the first `end` bytes are on disk, or the upload is over; the bytes on disk."""
        with self._cond:
            while self.received < end and not self.done and self.error is None:
                self._cond.wait()
            return self.received


class GrowingFile(io.RawIOBase):
    """A read-only file object over an `Upload` for soundfile's virtual I/O: its length is the upload's
    declared size. While `opening`, reads return what has arrived (0 bytes past it: an end of file, as a
    header parser sees one); then they wait for their bytes. A failed upload reads as an end of file (and
    `Upload.error` says why): soundfile's callbacks must not raise."""

    def __init__(self, upload: Upload) -> None:
        super().__init__()
        self.upload = upload
        self.opening = True
        self._pos = 0
        self._fd = os.open(upload.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.upload.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        end = min(self._pos + len(view), self.upload.size)
        if end <= self._pos:
            return 0
        have = self.upload.received if self.opening else self.upload.wait(end)
        if self.upload.error is not None:
            return 0
        count = min(end, have) - self._pos
        if count <= 0:
            return 0
        data = os.pread(self._fd, count, self._pos)
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


class UploadReader:
    """`info` and `blocks(block_size)` of an upload still arriving, as `cunet.io.audio.AudioReader` gives them
    for the finished file. NotStreamable if soundfile cannot open it from what has arrived, if its format is
    not one of STREAMED_FORMATS or its header does not give its length, or if cunet does not separate it as
    it is (channels, sample rate, no samples: `cunet.ui.uploads.check_audio` then says why, once it is
    complete). Use as a context manager."""

    def __init__(self, upload: Upload) -> None:
        import soundfile as sf

        self.upload = upload
        self._raw = GrowingFile(upload)
        try:
            self._file = sf.SoundFile(self._raw)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            self._raw.close()
            raise NotStreamable(str(exc)) from None
        self._raw.opening = False
        f = self._file
        if not (
            f.format in STREAMED_FORMATS
            and f.channels in (1, 2)
            and MIN_RATE <= f.samplerate <= MAX_RATE
            and 0 < f.frames < _UNKNOWN_LENGTH
        ):
            self.close()
            raise NotStreamable(
                f"{f.format}, {f.channels} channels, {f.samplerate} Hz, {f.frames} frames"
            )
        self.info = AudioInfo(int(f.samplerate), int(f.channels), int(f.frames))

    def blocks(self, block_size: int) -> Iterator[np.ndarray]:
        """float32 [<= block_size, n_channels] blocks of the whole file, each once its bytes arrived; the
        upload's own error (or AudioError) if it fails or ends early."""
        left = self.info.n_samples
        while left > 0:
            want = min(block_size, left)
            try:
                block = self._file.read(want, dtype="float32", always_2d=True)
            except (RuntimeError, OSError) as exc:
                self._raise_upload_error()
                raise AudioError(f"cannot decode audio ({exc})") from None
            left -= block.shape[0]
            if block.shape[0] < want:
                self._raise_upload_error()
                raise AudioError(
                    f"the file ended after {self.info.n_samples - left} of its "
                    f"{self.info.n_samples} samples"
                )
            yield block

    def _raise_upload_error(self) -> None:
        error = self.upload.error
        if isinstance(error, CunetError):
            raise error
        if error is not None:
            raise AudioError("the upload was interrupted") from None

    def close(self) -> None:
        self._file.close()
        self._raw.close()

    def __enter__(self) -> UploadReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

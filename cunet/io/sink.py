"""Raw PCM output: separated blocks written as one interleaved stream to stdout, a named pipe or a
file (the `--stream` output of `cunet separate`; the layout is in docs/separating.md)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from ..errors import AudioError, literal
from .atomic import StagedFile, make_dirs
from .pcm import encode


class PcmSink:
    """Writes separated blocks [n_outputs, m, n_channels] as one raw stream of n_outputs * n_channels
    interleaved channels (output-major: out0 ch0, out0 ch1, out1 ch0, ...) to a file descriptor (stdout)
    or, atomically, to a new file.

    encoding: f32le, s16le or s24le. clip: clamp to [-1, 1] (counting `n_clipped`); integers always are.
    """

    def __init__(
        self,
        encoding: str,
        clip: bool,
        fd: int | None = None,
        path: str | os.PathLike | None = None,
        overwrite: bool = False,
    ) -> None:
        self.encoding, self.clip = encoding, clip or encoding != "f32le"
        self.n_clipped = 0
        self.n_written = 0
        self._staged: StagedFile | None = None
        self.path = None if path is None else Path(path)
        if self.path is not None:
            if self.path.exists() and (not overwrite or not self.path.is_file()):
                if not self.path.is_file():
                    raise AudioError(f"output '{self.path}' exists and is not a file")
                raise AudioError(
                    f"output '{literal(self.path)}' exists; use {{force}} to overwrite",
                    names={"force": "overwrite=True"},
                )
            self._staged = StagedFile(self.path)
            try:
                make_dirs(self.path.parent)
                fd = os.open(self._staged.partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except OSError as exc:
                raise AudioError(f"cannot write '{self.path}': {exc.strerror or exc}") from None
        assert fd is not None
        self.fd = fd

    def write(self, block: np.ndarray) -> None:
        block = np.asarray(block, np.float32)
        frames = np.transpose(block, (1, 0, 2)).reshape(
            block.shape[1], -1
        )  # [m, outputs * channels]
        if self.clip:
            self.n_clipped += int(np.count_nonzero(np.abs(frames) > 1.0))
            frames = np.clip(frames, -1.0, 1.0)
        view = memoryview(encode(frames, self.encoding))
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except BrokenPipeError:
            raise AudioError("the output stream was closed by its reader (broken pipe)") from None
        except OSError as exc:
            raise AudioError(f"cannot write the output stream: {exc.strerror or exc}") from None
        self.n_written += block.shape[1]

    def commit(self) -> None:
        """Close the file and rename it into place (no-op for a stream)."""
        if self._staged is not None:
            os.close(self.fd)
            self._staged.commit(overwrite=True)
            self._staged = None

    def abort(self) -> None:
        if self._staged is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self._staged.abort()
            self._staged = None


def is_fifo(path: str | os.PathLike) -> bool:
    """Whether `path` is a named pipe (a stream to it is written as it comes, like stdout)."""
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False

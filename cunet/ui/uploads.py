"""Receiving a song from the browser: streamed to disk under a size limit, then decoded before any work.

The browser's file name is only ever shown, never used as a path: the upload is stored as
`<song folder>/input<ext>`, where ext is the name's extension only if it is one of the audio extensions
cunet reads (`cunet.io.audio.AUDIO_EXTENSIONS`; otherwise none, and ffmpeg probes the content).
"""

from __future__ import annotations

import errno
import os
import unicodedata
from collections.abc import AsyncIterator, Callable
from pathlib import Path, PurePosixPath

from ..chunk_separator import check_channels
from ..errors import AudioError, CunetError, UserError, one_line
from ..io.audio import AUDIO_EXTENSIONS, AudioInfo, AudioReader
from ..io.naming import clip_utf8
from .failures import DISK_FULL, NoSpace, disk_full

__all__ = ["CHECKED_SAMPLES", "TooLarge", "check_audio", "display_name", "input_path", "receive"]

CHECKED_SAMPLES = 1 << 16  # samples decoded to make sure the data, not only the header, is audio
MAX_NAME = 200  # bytes of UTF-8: download names add to it and must stay under 255 (`results`)


class TooLarge(UserError):
    """The upload exceeds the size limit (HTTP 413)."""


def display_name(raw: str | None) -> str:
    """The browser's file name made safe to show and to put in a download name: its last path component,
    control and path characters removed, at most MAX_NAME bytes of UTF-8 (cut between characters); "song"
    if nothing is left."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C" and c not in '"<>:|?*')
    name = clip_utf8(name.strip(" ."), MAX_NAME).strip()
    return name or "song"


def input_path(folder: Path, name: str) -> Path:
    """Where an upload called `name` is stored inside `folder`: `input` plus a known audio extension."""
    lower = name.lower()
    suffix = ".stem.mp4" if lower.endswith(".stem.mp4") else PurePosixPath(lower).suffix
    return folder / (
        "input" + (suffix if PurePosixPath("x" + suffix).suffix in AUDIO_EXTENSIONS else "")
    )


async def receive(
    chunks: AsyncIterator[bytes],
    path: Path,
    limit: int,
    declared: int | None = None,
    on_data: Callable[[int], None] | None = None,
) -> int:
    """Write the request body `chunks` to a new file at `path` (the folder must exist); returns its size in
    bytes. TooLarge (and no file left) when `declared` (Content-Length) or the bytes received exceed
    `limit` (bytes), or the file system's largest file; NoSpace when the disk is full; UserError for an
    empty body; the file is removed on any failure, a dropped connection too. on_data(size): called with
    the bytes on disk so far after each part is written (and flushed: readers of the file see it); an
    exception it raises stops the upload."""
    if declared is not None and declared > limit:
        raise TooLarge(
            f"the file is {_mb(declared)}, more than the limit of {_mb(limit)} (cunet ui --max-upload-mb)"
        )
    size = 0
    try:
        with open(path, "xb") as f:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TooLarge(
                        f"the file is more than the limit of {_mb(limit)} (cunet ui --max-upload-mb)"
                    )
                f.write(chunk)
                if on_data is not None:
                    f.flush()
                    on_data(size)
        if size == 0:
            raise UserError("the file is empty")
    except BaseException as exc:
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and disk_full(exc):
            raise NoSpace(DISK_FULL) from exc
        if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
            raise TooLarge("the file is larger than the server's file system allows") from exc
        raise
    return size


def check_audio(path: Path, name: str) -> AudioInfo:
    """Open and decode the start of the stored upload: its `AudioInfo`, or AudioError with a one-line
    message naming the song by `name` (never the server's path) for anything but mono or stereo audio."""
    try:
        with AudioReader(path) as reader:
            info = reader.info
            check_channels(info.n_channels)
            next(reader.blocks(CHECKED_SAMPLES), None)
            return info
    except CunetError as exc:
        message = one_line(str(exc)).replace(str(path), name).replace(os.fspath(path.parent), "")
        for wrapper in (
            f"{name}: ",
            "cannot decode audio (",
            f"{name}: ",
        ):  # one level of detail is enough
            if message.startswith(wrapper):
                message = message[len(wrapper) : -1 if wrapper.endswith("(") else None]
        raise AudioError(f"{name}: not audio cunet can read ({message})") from None


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"

"""A separated song's downloads: each stem as wav, flac or mp3, and a zip of all its stems.

The stems are separated to 16-bit wav (`Jobs`); flac and mp3 are made from them on the first request
with the writer `cunet separate` uses (`cunet.io.output.OutputSettings`: 16-bit flac, 320 kbit/s mp3 by
ffmpeg), written atomically under `<song folder>/downloads/` and kept for later requests. Zips store
(no compression: audio does not shrink) `<song name>/<stem>.<format>` entries, also built atomically.
Every name a download gives (file names, the zip's folder and entries) is at most MAX_FILE_NAME bytes of
UTF-8, so it can be saved and unzipped on any common file system (255 bytes on Linux and macOS).
"""

from __future__ import annotations

import threading
import zipfile
from pathlib import Path

from ..errors import UserError
from ..io.atomic import atomic_path
from ..io.naming import clip_utf8
from ..io.output import OutputSettings
from ..io.writer import OUTPUT_FORMATS
from .jobs import Song

__all__ = ["FORMATS", "MAX_FILE_NAME", "Downloads", "download_name", "song_stem_name"]

FORMATS = OUTPUT_FORMATS  # wav, flac, mp3: what `cunet separate` writes
# bytes of UTF-8: under 255, with room for the " (1)" a browser adds to a second download
MAX_FILE_NAME = 240
_BLOCK = 1 << 16


def song_stem_name(song: Song, suffix: str = "") -> str:
    """The song's name without its audio extension, for download names: cut so that it and `suffix` take at
    most MAX_FILE_NAME bytes of UTF-8 (the name keeps at least a few characters)."""
    name = song.name
    lower = name.lower()
    for ext in (".stem.mp4", ".stem.m4a"):
        if lower.endswith(ext):
            name = name[: -len(ext)]
            break
    else:
        stem, dot, _ = name.rpartition(".")
        name = stem if dot and stem else name
    room = max(MAX_FILE_NAME - len(suffix.encode()), 16)
    return clip_utf8(name, room).rstrip(" .") or "song"


def download_name(song: Song, key: str | None, fmt: str) -> str:
    """`<song> - <stem>.<fmt>` for a stem, `<song> - stems (<fmt>).zip` for the zip (key None); at most
    MAX_FILE_NAME bytes of UTF-8 (the song's name is cut)."""
    suffix = f" - {key}.{fmt}" if key is not None else f" - stems ({fmt}).zip"
    return song_stem_name(song, suffix) + suffix


class Downloads:
    """Files to send for downloads; one lock per song, so two requests never build the same file twice."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, song: Song) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(song.id, threading.Lock())

    def stem(self, song: Song, key: str, fmt: str) -> Path:
        """The stem `key` of a separated song in format `fmt` (UserError for an unknown key or format)."""
        _check_format(fmt)
        if key not in song.stems:
            raise UserError(
                f"'{song.name}' has no stem '{key}' (it has {', '.join(song.stems) or 'none yet'})"
            )
        wav = song.stems[key]
        if fmt == "wav":
            return wav
        target = song.folder / "downloads" / f"{key}.{fmt}"
        with self._lock(song):
            if not target.is_file():
                _convert(wav, target, fmt)
        return target

    def zip(self, song: Song, fmt: str) -> Path:
        """A zip of all the stems of a separated song in format `fmt`."""
        _check_format(fmt)
        if not song.stems:
            raise UserError(f"'{song.name}' has no stems yet")
        files = {key: self.stem(song, key, fmt) for key in song.stems}
        target = song.folder / "downloads" / f"stems-{fmt}.zip"
        folder = song_stem_name(song)  # entries `folder/key.fmt`: keys are the model's short names
        with self._lock(song):
            if not target.is_file():
                with atomic_path(target) as partial:
                    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as z:
                        for key, path in files.items():
                            z.write(path, f"{folder}/{key}.{fmt}")
        return target

    def forget(self, song_id: str) -> None:
        with self._guard:
            self._locks.pop(song_id, None)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UserError(f"unknown format '{fmt[:20]}' (valid: {', '.join(FORMATS)})")


def _convert(wav: Path, target: Path, fmt: str) -> None:
    """Re-encode a stem wav as `fmt` at `target`, atomically (as `cunet separate -f fmt` writes it)."""
    import soundfile as sf

    target.parent.mkdir(exist_ok=True)
    with sf.SoundFile(str(wav)) as f:
        writer = OutputSettings(fmt).writer(target, f.samplerate, f.channels, target.parent)
        try:
            while True:
                block = f.read(_BLOCK, dtype="float32", always_2d=True)
                if not block.shape[0]:
                    break
                writer.write(block)
            writer.commit()
        except BaseException:
            writer.abort()
            raise

"""A separated song's downloads: each stem as wav, flac or mp3, and a zip of all its stems.

The stems are separated to 16-bit wav (`Jobs`); flac and mp3 are made from them on the first request
with the writer `cunet separate` uses (`cunet.io.output.OutputSettings`: 16-bit flac, 320 kbit/s mp3 by
ffmpeg), written atomically under `<song folder>/downloads/` and kept for later requests. Zips store
(no compression: audio does not shrink) `<song name>/<stem>.<format>` entries, also built atomically.
"""

from __future__ import annotations

import threading
import zipfile
from pathlib import Path

from ..errors import UserError
from ..io.atomic import atomic_path
from ..io.output import OutputSettings
from ..io.writer import OUTPUT_FORMATS
from .jobs import Song

__all__ = ["FORMATS", "Downloads", "download_name", "song_stem_name"]

FORMATS = OUTPUT_FORMATS  # wav, flac, mp3: what `cunet separate` writes
_BLOCK = 1 << 16


def song_stem_name(song: Song) -> str:
    """The song's name without its audio extension, for download names."""
    name = song.name
    lower = name.lower()
    for ext in (".stem.mp4", ".stem.m4a"):
        if lower.endswith(ext):
            return name[: -len(ext)] or "song"
    stem, dot, _ = name.rpartition(".")
    return stem if dot and stem else name


def download_name(song: Song, key: str | None, fmt: str) -> str:
    """`<song> - <stem>.<fmt>` for a stem, `<song> - stems (<fmt>).zip` for the zip (key None)."""
    base = song_stem_name(song)
    return f"{base} - {key}.{fmt}" if key is not None else f"{base} - stems ({fmt}).zip"


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
        folder = song_stem_name(song)
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

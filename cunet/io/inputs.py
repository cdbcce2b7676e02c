"""What to separate: command-line inputs expanded into a list of audio inputs, in a stable order.

A file is taken as it is (whatever its extension); `-` is standard input; a directory gives the audio
files in it (`AUDIO_EXTENSIONS`), and with `recursive` those in its subfolders too, sorted by folder,
then name (case-insensitively, then exactly), a folder's own files before its subfolders'. Skipped,
each with one note: files that are not audio and (without `recursive`) subfolders. Skipped silently:
hidden files and folders (names starting with "."; e.g. macOS `._song.mp3` resource forks and cunet's
partial files), symbolic links to folders (no loops), and the output directory if it lies inside the
scanned one (earlier results are not separated again).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import AudioError
from .audio import AUDIO_EXTENSIONS, input_stem

STDIN = "-"


@dataclass(frozen=True)
class InputItem:
    """One input: `path` (or "-" for stdin), the `track` name outputs are named after, and `folder`, its
    folder relative to the directory given on the command line ("" for a file given directly)."""

    path: str
    track: str
    folder: str = ""

    @property
    def is_stdin(self) -> bool:
        return self.path == STDIN


def is_audio_name(name: str) -> bool:
    """True for a file name with an audio extension (`.stem.mp4` included)."""
    return Path(name).suffix.lower() in AUDIO_EXTENSIONS


def scan_directory(
    root: Path,
    recursive: bool,
    exclude: Iterable[Path] = (),
    note: Callable[[str], None] | None = None,
) -> list[InputItem]:
    """The audio files under `root` (see the module docstring); AudioError if there is none, or if
    `root` cannot be listed. A subfolder that cannot be listed is a note; the rest is still scanned.
    Iterative (an explicit stack), so no depth of folders exhausts Python's recursion limit."""
    excluded = set()  # (device, inode) of folders not to scan: no realpath per folder (deep trees)
    for p in exclude:
        try:
            st = os.stat(p)
        except OSError:
            continue
        excluded.add((st.st_dev, st.st_ino))
    found: list[tuple[tuple, InputItem]] = []
    subfolders: list[str] = []
    stack: list[tuple[str, ...]] = [()]
    while stack:
        rel_parts = stack.pop()
        here = root.joinpath(*rel_parts)
        try:
            with os.scandir(here) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if not rel_parts:
                raise AudioError(
                    f"{root}: cannot list the folder ({exc.strerror or exc})"
                ) from None
            if note is not None:
                note(f"{here}: skipped (cannot list the folder: {exc.strerror or exc})")
            continue
        dirs: list[os.DirEntry[str]] = []
        files: list[os.DirEntry[str]] = []
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            (dirs if is_dir else files).append(entry)
        children = []
        for entry in dirs:
            name = entry.name
            if name.startswith("."):
                continue
            try:
                st = entry.stat()
                if (st.st_dev, st.st_ino) in excluded:
                    continue
            except OSError:
                pass
            if not recursive:
                subfolders.append(name)
            elif not entry.is_symlink():  # no loops through links
                children.append((*rel_parts, name))
        stack.extend(reversed(children))  # visited in order, as notes are printed
        folder = "/".join(rel_parts)
        for entry in files:
            name = entry.name
            if name.startswith("."):
                continue
            path = here / name
            if not is_audio_name(name):
                if note is not None:
                    note(f"{path}: skipped (not an audio file)")
                continue
            key = (tuple(p.casefold() for p in rel_parts), name.casefold(), rel_parts, name)
            found.append((key, InputItem(str(path), input_stem(name), folder)))
    if note is not None:
        for d in subfolders:
            note(f"{root / d}: skipped (a folder; -r separates subfolders too)")
    if not found:
        hint = "" if recursive else " (-r looks in subfolders too)"
        raise AudioError(f"{root}: no audio files in this folder{hint}")
    return [item for _, item in sorted(found, key=lambda pair: pair[0])]


def expand_inputs(
    args: Iterable[str],
    recursive: bool = False,
    exclude: Iterable[Path] = (),
    note: Callable[[str], None] | None = None,
    error: Callable[[str, Exception], None] | None = None,
) -> list[InputItem]:
    """The inputs named on the command line, folders expanded, in order; the same file named twice
    (also through a folder) is kept once.

    error(arg, exc): called for a folder that cannot be listed or holds no audio (raised without it).
    """
    items: list[InputItem] = []
    seen: set[str] = set()
    for arg in args:
        if arg == STDIN:
            new = [InputItem(STDIN, "stdin")]
        elif os.path.isdir(arg):
            try:
                new = scan_directory(Path(arg), recursive, exclude, note)
            except AudioError as exc:
                if error is None:
                    raise
                error(arg, exc)
                continue
        else:
            new = [InputItem(arg, input_stem(arg))]
        for item in new:
            key = item.path if item.is_stdin else os.path.realpath(item.path)
            if key not in seen:
                seen.add(key)
                items.append(item)
    return items

"""What a batch separates: files, folders, manifests and URIs, listed into `BatchInput`s in a stable order.

Local files and folders are expanded as `cunet separate` expands them (`cunet.io.inputs`: audio files
by extension, `recursive` for subfolders, hidden files skipped, the output folder excluded). A manifest
is a text file of paths, one a line (`#` comments; an `.m3u` playlist is one), or a `.csv` file with a
header whose `path` (or `input`) column names them (else its first column). Relative entries are
relative to the manifest's folder, and their folder there fills `{folder}`, as for a folder given on
the command line. A URI (`s3://bucket/prefix/`, any file system fsspec knows) is a file or, like a
folder, every audio file under it; workers download it before separating it.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import AudioError, CunetError, MissingExtra, UserError
from ..io.atomic import atomic_path, make_dirs
from ..io.audio import input_stem
from ..io.inputs import expand_inputs, is_audio_name

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
MAX_MANIFEST_BYTES = 1 << 30  # a manifest of a billion bytes is a mistake, not a catalog

Note = Callable[[str], None]
Error = Callable[[str, Exception], None]


@dataclass(frozen=True, slots=True)
class BatchInput:
    """One song: `source` (a local path or a URI), the `track` and `folder` its outputs are named by."""

    source: str
    track: str
    folder: str = ""


def is_uri(text: str) -> bool:
    """True for `scheme://...` other than `file://` (a local path spelt as a URI)."""
    return bool(_SCHEME.match(text)) and not text.startswith("file://")


def local_path(text: str) -> str:
    """`file:///x` as `/x`; anything else unchanged."""
    return text[len("file://") :] if text.startswith("file://") else text


def list_inputs(
    args: Sequence[str],
    manifests: Sequence[str] = (),
    recursive: bool = False,
    exclude: Iterable[Path] = (),
    note: Note | None = None,
    error: Error | None = None,
) -> list[BatchInput]:
    """The songs of the command-line `args` then of each manifest, each once (the same file named twice,
    also through a folder, is kept at its first place). error(arg, exc): an argument that cannot be
    listed (a folder without audio, an unreadable URI); the others are still listed."""
    found: list[BatchInput] = []
    seen: set[str] = set()
    exclude = list(exclude)

    def add(arg: str, folder: str | None) -> None:
        try:
            new = _expand(arg, recursive, exclude, note)
        except CunetError as exc:
            if error is None:
                raise
            error(arg, exc)
            return
        for item in new:
            key = item.source if is_uri(item.source) else os.path.realpath(item.source)
            if key in seen:
                continue
            seen.add(key)
            found.append(item if folder is None else BatchInput(item.source, item.track, folder))

    for arg in args:
        add(local_path(arg), None)
    for manifest in manifests:
        for entry, folder in read_manifest(manifest):
            add(entry, folder)
    return found


def _expand(arg: str, recursive: bool, exclude: list[Path], note: Note | None) -> list[BatchInput]:
    if is_uri(arg):
        return list_remote(arg, recursive, note)
    return [
        BatchInput(i.path, i.track, i.folder)
        for i in expand_inputs([arg], recursive, exclude, note)
    ]


def read_manifest(path: str) -> list[tuple[str, str | None]]:
    """(entry, folder) pairs of a manifest (module docstring). folder: a relative file entry's folder
    inside the manifest's folder ("" at its top), None for folders, URIs and absolute paths (named as
    when given on the command line). UserError if the manifest cannot be read."""
    manifest = Path(local_path(path))
    try:
        if manifest.stat().st_size > MAX_MANIFEST_BYTES:
            raise UserError(f"manifest '{path}' is larger than {MAX_MANIFEST_BYTES} bytes")
        with open(manifest, encoding="utf-8-sig", newline="") as file:
            lines = _csv_entries(file) if manifest.suffix.lower() == ".csv" else _text_entries(file)
    except OSError as exc:
        raise UserError(f"manifest '{path}': cannot read it ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"manifest '{path}': not a text or CSV file of paths ({exc})") from None
    base = manifest.parent
    pairs: list[tuple[str, str | None]] = []
    for entry in lines:
        entry = local_path(entry)
        if is_uri(entry) or os.path.isabs(entry):
            pairs.append((entry, None))
            continue
        full = base / entry
        parent = PurePosixPath(entry.replace(os.sep, "/")).parent
        inside = ".." not in parent.parts and not full.is_dir()
        pairs.append((str(full), _folder(parent) if inside else None))
    return pairs


def _folder(parent: PurePosixPath) -> str:
    return "" if str(parent) == "." else str(parent)


def _text_entries(file: Any) -> list[str]:
    lines = (line.strip() for line in file)
    return [line for line in lines if line and not line.startswith("#")]


def _csv_entries(file: Any) -> list[str]:
    rows = csv.reader(file)
    header = next(rows, None)
    if header is None:
        return []
    names = [h.strip().lower() for h in header]
    column = next((names.index(n) for n in ("path", "input") if n in names), 0)
    return [row[column].strip() for row in rows if len(row) > column and row[column].strip()]


def _filesystem(uri: str) -> tuple[Any, str]:
    """(fsspec file system, path inside it) for a URI; MissingExtra/UserError in one line."""
    try:
        import fsspec
    except ImportError:
        raise MissingExtra(
            f'fsspec is not installed ({uri} needs it); pip install "cunet[ray]"'
        ) from None
    try:
        return fsspec.core.url_to_fs(uri)
    except ImportError as exc:  # the file system's own package, e.g. s3fs
        raise MissingExtra(f"{uri}: {exc}") from None
    except (ValueError, OSError) as exc:
        raise UserError(f"{uri}: {exc}") from None


def list_remote(uri: str, recursive: bool, note: Note | None = None) -> list[BatchInput]:
    """The audio files at a URI: the file itself, or those under it (with `recursive`, in its
    subfolders too), sorted by folder then name; AudioError if none or if it cannot be listed."""
    fs, root = _filesystem(uri)
    root = root.rstrip("/")
    try:
        if fs.isfile(root):
            return [BatchInput(uri, input_stem(root))]
        if recursive:
            files = fs.find(root, withdirs=False)
        else:
            entries = fs.ls(root, detail=True)
            files = [e["name"] for e in entries if e.get("type") == "file"]
            for e in entries:
                if e.get("type") == "directory" and note is not None:
                    name = e["name"].rstrip("/").rpartition("/")[2]
                    if not name.startswith("."):
                        note(
                            f"{uri.rstrip('/')}/{name}: skipped (a folder; -r lists subfolders too)"
                        )
    except FileNotFoundError:
        raise AudioError(f"{uri}: no such file or folder") from None
    except (OSError, ValueError) as exc:
        raise AudioError(f"{uri}: cannot list it ({exc})") from None
    found = []
    for name in files:
        rel = PurePosixPath(name).relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if not is_audio_name(rel.name):
            if note is not None:
                note(f"{fs.unstrip_protocol(name)}: skipped (not an audio file)")
            continue
        folder = _folder(rel.parent)
        key = (tuple(p.casefold() for p in rel.parent.parts), rel.name.casefold(), str(rel))
        found.append((key, BatchInput(fs.unstrip_protocol(name), input_stem(rel.name), folder)))
    if not found:
        hint = "" if recursive else " (-r looks in subfolders too)"
        raise AudioError(f"{uri}: no audio files there{hint}")
    return [item for _, item in sorted(found, key=lambda pair: pair[0])]


def fetch_remote(uri: str, target: Path) -> Path:
    """Download `uri` to the local file `target` (published atomically: a half download never looks
    complete); AudioError in one line if it cannot be read."""
    fs, path = _filesystem(uri)
    make_dirs(target.parent)
    try:
        with atomic_path(target) as partial:
            fs.get_file(path, str(partial))
    except (OSError, ValueError) as exc:
        raise AudioError(f"{uri}: cannot download it ({exc})") from None
    return target

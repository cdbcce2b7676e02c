"""Atomic file writes, the one way cunet writes files: stage a hidden partial file, rename it into place.

A partial is named `.<name>.<pid>.<token>.cunet-partial[<ext>]` in the target's folder (or a given
staging folder on the same file system), so a reader never sees a half-written file under a final
name, an interrupted write leaves nothing but a partial, and a later run can tell partials of dead
processes (`remove_stale_partials`) from those of live ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PARTIAL_SUFFIX = ".cunet-partial"
_PARTIAL_NAME = re.compile(r"\.(\d+)\.[0-9a-f]+" + re.escape(PARTIAL_SUFFIX))


def make_dirs(path: str | os.PathLike) -> None:
    """`path` and its missing parents, like `os.makedirs(path, exist_ok=True)` but iterative: no
    depth of folders exhausts Python's recursion limit."""
    path = Path(path)
    missing = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
        if not folder.is_dir():
            raise FileExistsError(17, "File exists", str(folder))


class StagedFile:
    """A hidden partial file for `path`; `commit()` renames it into place, `abort()` removes it.

    staging_dir: where the partial lives (default: path's folder; must be on the same file system).
    ext: appended to the partial's name, for writers that infer the format from it (".keras").
    The partial is not created here: the caller writes `self.partial`.
    """

    def __init__(
        self, path: str | os.PathLike, staging_dir: str | os.PathLike | None = None, ext: str = ""
    ) -> None:
        self.path = Path(path)
        staging = Path(staging_dir) if staging_dir is not None else self.path.parent
        self.partial = (
            staging / f".{self.path.name}.{os.getpid()}.{secrets.token_hex(6)}{PARTIAL_SUFFIX}{ext}"
        )

    def commit(self, overwrite: bool = True) -> Path:
        """Rename the partial to `path` (atomic within one file system) and return `path`.

        overwrite=False never replaces an existing `path`, not even one that appeared a moment ago
        (another process): FileExistsError then, and the partial is kept for `abort()`.
        """
        make_dirs(self.path.parent)
        if overwrite:
            os.replace(self.partial, self.path)
            return self.path
        try:
            os.link(self.partial, self.path)  # fails if path exists, atomically
        except FileExistsError:
            raise
        except OSError:  # no hard links here (some FUSE/FAT mounts): best effort
            if os.path.lexists(self.path):
                raise FileExistsError(17, "File exists", str(self.path)) from None
            os.replace(self.partial, self.path)
            return self.path
        self.partial.unlink()
        return self.path

    def abort(self) -> None:
        """Remove the partial if it exists (idempotent)."""
        with contextlib.suppress(OSError):
            self.partial.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, ext: str = "", overwrite: bool = True) -> Iterator[Path]:
    """Yield a partial path to write; on success it is renamed to `path`, on any exception (Ctrl-C too)
    it is removed. `ext` as for `StagedFile`."""
    staged = StagedFile(path, ext=ext)
    make_dirs(Path(path).parent)
    try:
        yield staged.partial
        staged.commit(overwrite)
    except BaseException:
        staged.abort()
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """`obj` as indented JSON with sorted keys (non-JSON values through `str`)."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def remove_stale_partials(directory: str | os.PathLike) -> None:
    """Delete partial files left in `directory` by processes that no longer run (e.g. killed ones)."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for path in directory.glob(f".*{PARTIAL_SUFFIX}*"):
        match = _PARTIAL_NAME.search(path.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or pid_alive(pid):
            continue
        with contextlib.suppress(OSError):
            path.unlink()


def pid_alive(pid: int) -> bool:
    """True unless no process `pid` exists (one we may not signal still counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True

"""Provenance records and self-describing model files; package versions.

A `.keras` file written by `save_model` carries an extra zip entry,
`cunet.json`, with the config, git commit, package versions, data used and
metrics, so a model file alone says where it came from.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import ModelError
from .io.atomic import StagedFile, write_json_atomic

__all__ = [
    "PROVENANCE_ENTRY",
    "MAX_RECORD_BYTES",
    "git_commit",
    "make_provenance",
    "package_versions",
    "parse_record",
    "read_provenance",
    "save_model",
    "weights_digest",
    "write_json_atomic",
]

PROVENANCE_ENTRY = "cunet.json"
MAX_RECORD_BYTES = 16 << 20  # a provenance record is a few kB; larger ones are refused unread
TRAINING_PACKAGES = (
    "cunet",
    "tensorflow",
    "keras",
    "jax",
    "numpy",
    "librosa",
    "musdb",
    "museval",
    "soundfile",
)


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """The environment's CUNET_GIT_COMMIT when set (a copy of the tree or a source archive, whose own
    git metadata, if any, may be stale), else the commit checked out at `path` (default: this package's
    folder), or None."""
    declared = os.environ.get("CUNET_GIT_COMMIT")
    if declared:
        return declared
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    commit = out.stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=10,
    )
    return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def package_versions(names: Sequence[str] = TRAINING_PACKAGES) -> dict[str, str | None]:
    """{"python": version, name: installed version or None for each of `names`}; cunet run from a source
    tree without being installed reports its `__version__`."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    if (
        "cunet" in versions and versions["cunet"] is None
    ):  # the package itself is always imported already
        versions["cunet"] = getattr(sys.modules.get(__package__ or "cunet"), "__version__", None)
    return versions


def make_provenance(
    config: dict[str, Any],
    data: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A JSON-serialisable provenance record."""
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "packages": package_versions(),
        "config": config,
        "data": data or {},
        "metrics": metrics or {},
        **extra,
    }


def save_model(model: Any, path: str | os.PathLike, provenance: dict[str, Any]) -> Path:
    """Save `model` as a `.keras` file with its provenance embedded; atomic (partial file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = StagedFile(path, ext=".keras")  # keras insists on the extension
    try:
        model.save(staged.partial)
        record = {**provenance, "weights_sha256": weights_digest(staged.partial)}
        with zipfile.ZipFile(staged.partial, "a") as archive:
            archive.writestr(
                PROVENANCE_ENTRY, json.dumps(record, indent=2, sort_keys=True, default=str)
            )
        return staged.commit()
    except BaseException:
        staged.abort()
        raise


def weights_digest(path: str | os.PathLike) -> str | None:
    """SHA-256 of the weights inside a `.keras` archive (None if it has none); detects tampered weights."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(".weights.h5")]
            if not names:
                return None
            digest = hashlib.sha256()
            for name in sorted(names):
                with archive.open(name) as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        digest.update(block)
            return digest.hexdigest()
    except (zipfile.BadZipFile, OSError, RuntimeError, EOFError):
        return None


def parse_record(data: bytes, source: str) -> dict[str, Any]:
    """A provenance record from its JSON bytes: an object whose "config" is an object.

    source names the record in messages, e.g. "model file 'm.keras': cunet.json". Raises ModelError
    (one line) for invalid UTF-8 or JSON, nesting too deep for the parser, or the wrong types.
    """
    try:
        record = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ModelError(f"{source} is nested too deeply to be a provenance record") from None
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ModelError(f"{source} is not valid JSON ({str(exc).splitlines()[0][:200]})") from None
    if not isinstance(record, dict):
        raise ModelError(
            f"{source} holds a JSON {type(record).__name__}, not a provenance record (an object)"
        )
    if "config" not in record:
        raise ModelError(f"{source} carries no cunet config; was it saved by cunet?")
    if not isinstance(record["config"], dict):
        raise ModelError(
            f"{source} has a config of type {type(record['config']).__name__}, not an object"
        )
    return record


def read_record_entry(archive: zipfile.ZipFile, source: str) -> dict[str, Any] | None:
    """The provenance record stored in an open `.keras` archive (None if it has no cunet.json);
    ModelError if it is larger than MAX_RECORD_BYTES or not a valid record."""
    try:
        info = archive.getinfo(PROVENANCE_ENTRY)
    except KeyError:
        return None
    if info.file_size > MAX_RECORD_BYTES:
        raise ModelError(
            f"{source} is {info.file_size} bytes, more than a provenance record can be"
        )
    return parse_record(archive.read(info), source)


def read_provenance(path: str | os.PathLike) -> dict[str, Any] | None:
    """The provenance embedded in a `.keras` file, or None if it has none or it is unreadable."""
    try:
        with zipfile.ZipFile(path) as archive:
            return read_record_entry(archive, f"'{path}': {PROVENANCE_ENTRY}")
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError, RuntimeError):
        return None

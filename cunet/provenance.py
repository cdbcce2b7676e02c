"""Provenance records and self-describing model files.

A `.keras` file written by `save_model` carries an extra zip entry,
`cunet.json`, with the config, git commit, package versions, data used and
metrics, so a model file alone says where it came from.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

PROVENANCE_ENTRY = "cunet.json"
_PACKAGES = ("cunet", "tensorflow", "keras", "numpy", "librosa", "musdb", "museval", "soundfile")


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """The commit checked out at `path` (default: this package's folder), or None."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    commit = out.stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                           capture_output=True, text=True, timeout=10)
    return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def make_provenance(config: dict[str, Any], data: dict[str, Any] | None = None,
                    metrics: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
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


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def save_model(model: Any, path: str | os.PathLike, provenance: dict[str, Any]) -> Path:
    """Save `model` as a `.keras` file with its provenance embedded; atomic (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        model.save(tmp)
        record = {**provenance, "weights_sha256": weights_digest(tmp)}
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(PROVENANCE_ENTRY, json.dumps(record, indent=2, sort_keys=True, default=str))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def weights_digest(path: str | os.PathLike) -> str | None:
    """SHA-256 of the weights inside a `.keras` archive (None if it has none); detects tampered weights."""
    import hashlib

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


def read_provenance(path: str | os.PathLike) -> dict[str, Any] | None:
    """The provenance embedded in a `.keras` file, or None if it has none."""
    try:
        with zipfile.ZipFile(path) as archive:
            if PROVENANCE_ENTRY not in archive.namelist():
                return None
            return json.loads(archive.read(PROVENANCE_ENTRY).decode("utf-8"))
    except (zipfile.BadZipFile, OSError, ValueError, KeyError):
        return None

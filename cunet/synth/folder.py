"""The dataset folder `cunet synth` writes, and what it may touch there: only what it created.

- `OUT/manifest.json` starts with `"generator": "cunet synth"` (its first key): a folder whose manifest
  does not is someone else's, and is refused before any work.
- `OUT/train/<song>/` is renamed in whole, with its `song.json` (the song's plan): a planned song's
  name taken by anything else (a file, a folder without such a `song.json`) is refused, never replaced.
- `OUT/.staging-<pid>/` holds the songs being rendered, marked by a `.cunet-synth-staging` file; only
  marked (or empty) staging folders of dead runs are removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from ..errors import UserError
from ..io.atomic import pid_alive
from .variation import SongPlan

MANIFEST = "manifest.json"
SONG_JSON = "song.json"
STAGING_PREFIX = ".staging-"
STAGING_MARKER = ".cunet-synth-staging"
GENERATOR = "cunet synth"
# The manifest's first key, as `json.dumps` writes it: checked on its first bytes, so a user's huge
# file named manifest.json is never read whole.
_MARKER = re.compile(rb'\A\{\s*"generator"\s*:\s*"' + re.escape(GENERATOR.encode()) + rb'"')
# song.json is a few kB; anything much larger is not one of ours.
MAX_SONG_JSON_BYTES = 16 << 20


def _not_ours(path: Path) -> UserError:
    return UserError(
        f"'{path}' exists and was not written by cunet synth, which never replaces what it did not "
        "create; give another --out (or move it away)"
    )


def check_manifest(out: Path) -> None:
    """UserError when `out` holds a manifest.json that cunet synth did not write (no marker, not a file)."""
    path = out / MANIFEST
    if not os.path.lexists(path):
        return
    head = b""
    if path.is_file() and not path.is_symlink():
        try:
            with open(path, "rb") as fh:
                head = fh.read(4096)
        except OSError:
            pass
    if not _MARKER.match(head):
        raise _not_ours(path)


def _song_json(folder: Path) -> dict | None:
    """The song.json of a song folder cunet synth wrote, or None."""
    path = folder / SONG_JSON
    try:
        if folder.is_symlink() or not path.is_file() or path.stat().st_size > MAX_SONG_JSON_BYTES:
            return None
        song = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return song if isinstance(song, dict) and isinstance(song.get("plan"), dict) else None


def planned_songs_done(out: Path, plans: Sequence[SongPlan]) -> dict[str, dict]:
    """{song name: its song.json} of the planned songs already complete in `out/train/`.

    UserError when a planned song's name is taken by something cunet synth did not write, or by a
    song of another plan (other settings or inputs).
    """
    done = {}
    for plan in plans:
        folder = out / "train" / plan.name
        if not os.path.lexists(folder):
            continue
        song = _song_json(folder)
        if song is None:
            raise _not_ours(folder)
        if song["plan"] != json.loads(json.dumps(plan.to_json())):
            raise UserError(
                f"'{out}' holds song '{plan.name}' made with other settings or inputs; "
                "give another --out (or remove it)"
            )
        done[plan.name] = song
    return done


def make_staging(out: Path) -> Path:
    """This run's staging folder `out/.staging-<pid>/`, marked as cunet synth's."""
    staging = out / f"{STAGING_PREFIX}{os.getpid()}"
    if os.path.lexists(staging) and not (staging / STAGING_MARKER).is_file():
        raise _not_ours(staging)
    staging.mkdir(exist_ok=True)
    (staging / STAGING_MARKER).touch()
    return staging


def remove_stale_staging(out: Path) -> None:
    """Remove the staging folders of runs that are no longer alive (only marked or empty ones)."""
    for path in out.glob(STAGING_PREFIX + "*"):
        pid = path.name[len(STAGING_PREFIX) :]
        if not pid.isdigit() or path.is_symlink() or not path.is_dir() or pid_alive(int(pid)):
            continue
        if (path / STAGING_MARKER).is_file():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):  # not empty: someone else's, left alone
                path.rmdir()

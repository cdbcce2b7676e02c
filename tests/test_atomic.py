"""Atomic writes: a file appears complete under its final name or not at all; partials are cleaned up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cunet.io.atomic import (
    PARTIAL_SUFFIX,
    StagedFile,
    atomic_path,
    remove_stale_partials,
    write_json_atomic,
    write_text_atomic,
)


def test_atomic_path_commits_or_leaves_nothing(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "sub" / "a.txt") as tmp:
        assert (
            tmp.parent == tmp_path / "sub"
            and tmp.name.startswith(".a.txt.")
            and PARTIAL_SUFFIX in tmp.name
        )
        tmp.write_text("one")
        assert not (tmp_path / "sub" / "a.txt").exists()
    assert (tmp_path / "sub" / "a.txt").read_text() == "one"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "sub" / "a.txt") as tmp:
            tmp.write_text("two, half written")
            raise KeyboardInterrupt
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["a.txt"]
    assert (tmp_path / "sub" / "a.txt").read_text() == "one"


def test_json_and_text_helpers(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "x.json", {"b": 1, "a": Path("p")})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": "p", "b": 1}
    write_text_atomic(tmp_path / "x.json", "replaced")
    assert (tmp_path / "x.json").read_text() == "replaced" and len(list(tmp_path.iterdir())) == 1


def test_commit_without_overwrite_never_replaces(tmp_path: Path) -> None:
    """The race of two processes: the later commit fails and keeps its partial for abort()."""
    first, second = StagedFile(tmp_path / "out.wav"), StagedFile(tmp_path / "out.wav")
    first.partial.write_bytes(b"first")
    second.partial.write_bytes(b"second")
    assert first.commit(overwrite=False) == tmp_path / "out.wav"
    with pytest.raises(FileExistsError):
        second.commit(overwrite=False)
    assert (tmp_path / "out.wav").read_bytes() == b"first" and second.partial.exists()
    second.abort()
    second.abort()  # idempotent
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]
    third = StagedFile(tmp_path / "out.wav", ext=".keras")
    assert third.partial.name.endswith(PARTIAL_SUFFIX + ".keras")
    third.partial.write_bytes(b"third")
    third.commit()  # overwrite (the default) replaces
    assert (tmp_path / "out.wav").read_bytes() == b"third"


def test_stale_partials_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    names = {
        "dead": f".01.2024.wav.{dead.pid}.7f00ab{PARTIAL_SUFFIX}",  # digits in the name are not the pid
        "mine": f".01.2024.wav.{os.getpid()}.7f00ad{PARTIAL_SUFFIX}",
        "live": f".7.wav.{os.getppid()}.0123{PARTIAL_SUFFIX}.keras",
        "foreign": f".x.wav.notapid{PARTIAL_SUFFIX}",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"x")
    remove_stale_partials(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {names["mine"], names["live"], names["foreign"]}

"""Small YAML files from strangers: refused in one line naming file and line, before they cost memory."""

from __future__ import annotations

import os

import pytest

from cunet.config import load_config
from cunet.errors import ConfigError
from cunet.safeyaml import read_yaml


def _laughs(levels: int = 9) -> str:
    """A "billion laughs" document: each alias level multiplies the size by ten."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "name,text,match",
    [
        (
            "syntax",
            "model:\n  kind: conditioned\n  n_layers: [1, 2\n",
            r"line 4, column 1: expected ','",
        ),
        ("tab", "model:\n\tkind: standard\n", r"line 2, column 1: found character '\\t'"),
        (
            "python_tag",
            "model:\n  kind: !!python/object/apply:os.system ['echo hi']\n",
            r"line 2, column 9: could not determine a constructor .* not allowed",
        ),
        ("laughs", _laughs(), r"expands to more than 100000 values"),
        ("recursive", "a: &a [*a]\n", r"recursive alias"),
        ("deep", "[" * 50_000 + "]" * 50_000, r"nested too deeply"),
        ("binary", "\xff\xfe", r"not UTF-8"),
    ],
)
def test_hostile_yaml_is_refused_in_one_line(tmp_path, name, text, match):
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(text.encode("latin-1") if name == "binary" else text.encode("utf-8"))
    with pytest.raises(ConfigError, match=match) as info:
        read_yaml(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_large_and_special_config_files_are_refused_unread(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * (1 << 20) + b"\n")
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        read_yaml(big)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(fifo)  # would block forever if opened

"""The CLI front: instant --help (no TensorFlow), sub-commands, one-line user errors."""
from __future__ import annotations

import subprocess
import sys

import pytest

from cunet.cli import build_parser, main


def test_help_does_not_import_tensorflow():
    code = ("import sys; from cunet.cli import build_parser; p = build_parser(); p.format_help();"
            "p._subparsers._group_actions[0].choices['separate'].format_help();"
            "assert 'tensorflow' not in sys.modules, 'tf imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_subcommands_present():
    text = build_parser().format_help()
    for name in ("separate", "train", "evaluate", "export"):
        assert name in text


def test_separate_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as info:
        main(["separate", "--help"])
    assert info.value.code == 0
    assert "--instrument" in capsys.readouterr().out


def test_user_errors_are_one_line(capsys, tmp_path):
    assert main(["separate", "x.wav", "--instrument", "kazoo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: unknown instrument 'kazoo' (valid: vocals, drums, bass, other, all)"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {n_filterz: 3}\n")
    assert main(["train", "--config", str(bad), "--musdb-root", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.n_filterz" in err[0]

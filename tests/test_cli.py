"""The CLI front: instant --help (no TensorFlow), sub-commands, one-line user errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cunet.cli import build_parser, main


def test_help_does_not_import_tensorflow():
    code = (
        "import sys; from cunet.cli import build_parser; p = build_parser(); p.format_help();"
        "p._subparsers._group_actions[0].choices['separate'].format_help();"
        "assert 'tensorflow' not in sys.modules, 'tf imported'"
    )
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


def test_user_errors_are_one_line(capsys, tmp_path, tiny_model_path):
    assert (
        main(["separate", "x.wav", "--instrument", "kazoo", "--model", str(tiny_model_path)]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: unknown instrument 'kazoo' for this model (it separates: vocals, drums, bass, other)"
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {n_filterz: 3}\n")
    assert (
        main(
            [
                "train",
                "--config",
                str(bad),
                "--musdb-root",
                str(tmp_path),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.n_filterz" in err[0]


def test_termination_signals_unwind_like_ctrl_c():
    import os
    import signal

    from cunet.cli import termination_raises
    from cunet.errors import Interrupted

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as info:
        with termination_raises():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
    assert info.value.name == "SIGTERM" and signal.getsignal(signal.SIGTERM) is before
    # A signal the parent ignores (nohup: SIGHUP) stays ignored.
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with termination_raises():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_main_reports_any_cunet_error_on_one_line(capsys, monkeypatch):
    import cunet.commands.separate as separate
    from cunet.cli import separate_main
    from cunet.errors import DataError

    def fail(args):
        raise DataError("bad\ndata \x1b[31m in 'x'")

    monkeypatch.setattr(separate, "run", fail)
    assert separate_main(["song.wav"]) == 2
    assert capsys.readouterr().err == "error: bad\\ndata \\x1b[31m in 'x'\n"

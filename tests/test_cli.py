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


def test_version(capsys):
    from cunet import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"cunet {__version__}"


# Runs a command with some optional dependencies made unimportable, as on an install without them.
_WITHOUT = (
    "import importlib.abc, sys\n"
    "blocked = set(sys.argv[1].split(','))\n"
    "class Block(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in blocked:\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, Block())\n"
    "from cunet.cli import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


def _run_without(modules: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT, modules, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "command,extra",
    [
        (["separate", "song.wav", "--model", "{keras}"], "cunet[tf]"),
        (
            ["export", "--model", "{keras}", "-o", "{tmp}/x.tflite", "--format", "tflite"],
            "cunet[tf]",
        ),
        (
            ["train", "--config", "configs/tiny.yaml", "--data", "{tmp}", "--out", "{tmp}/run"],
            "cunet[train]",
        ),
    ],
)
def test_a_missing_extra_is_one_line_naming_the_pip_install(
    command, extra, tmp_path, tiny_model_path
):
    """Without TensorFlow and Keras (the base install), commands that need them say what to install."""
    sf = pytest.importorskip("soundfile")
    sf.write(tmp_path / "song.wav", [[0.0, 0.0]] * 4410, 44100)
    args = [a.format(keras=tiny_model_path, tmp=tmp_path) for a in command]
    args = [str(tmp_path / "song.wav") if a == "song.wav" else a for a in args]
    proc = _run_without("tensorflow,keras,tf_keras", *args)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert lines[-1].startswith("error: ") and f'pip install "{extra}"' in lines[-1], lines
    assert "Traceback" not in proc.stderr


def test_the_shipped_model_separates_without_tensorflow(tmp_path):
    """The base install's promise: the shipped model runs on LiteRT with TensorFlow unimportable."""
    sf = pytest.importorskip("soundfile")
    import numpy as np

    from cunet.engines.loading import DEFAULT_TFLITE

    if not DEFAULT_TFLITE.exists():
        pytest.skip("shipped model not built yet")
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "song.wav", 0.1 * rng.standard_normal((44100, 2)), 44100)
    proc = _run_without(
        "tensorflow,keras,tf_keras,librosa,musdb,museval,matplotlib,pandas,tensorboard",
        "separate",
        str(tmp_path / "song.wav"),
        "-i",
        "vocals",
        "-o",
        str(tmp_path / "out"),
        "-q",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out" / "song" / "vocals.wav").is_file()

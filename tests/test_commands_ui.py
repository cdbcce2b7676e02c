"""`cunet ui`'s command line (`cunet.commands.ui`): options, checks before any work, the missing extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cunet.cli import build_parser, main


def test_options_and_defaults():
    args = build_parser().parse_args(["ui"])
    assert (args.host, args.port, args.model, args.no_browser, args.max_upload_mb) == (
        "127.0.0.1",
        8765,
        None,
        False,
        1024,
    )
    args = build_parser().parse_args(
        ["ui", "--host", "0.0.0.0", "--port", "0", "-m", "m.tflite", "--no-browser"]
    )
    assert (args.host, args.port, args.model, args.no_browser) == ("0.0.0.0", 0, "m.tflite", True)


UPLOAD_RANGE = "error: --max-upload-mb must be a number of MB from 1 to 1000000, got "


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ui", "--port", "70000"], "error: --port must be between 0 and 65535, got 70000"),
        (["ui", "--port", "-1"], "error: --port must be between 0 and 65535, got -1"),
        (["ui", "--port", "8e3"], "error: argument --port: invalid int value: '8e3'"),
        (["ui", "--port", "nan"], "error: argument --port: invalid int value: 'nan'"),
        (["ui", "--max-upload-mb", "0"], UPLOAD_RANGE + "0"),
        (["ui", "--max-upload-mb", "inf"], UPLOAD_RANGE + "inf"),  # before: OverflowError
        (["ui", "--max-upload-mb", "1e400"], UPLOAD_RANGE + "inf"),
        (["ui", "--max-upload-mb=-inf"], UPLOAD_RANGE + "-inf"),
        (["ui", "--max-upload-mb", "nan"], UPLOAD_RANGE + "nan"),
        (["ui", "--max-upload-mb", "1e-9"], UPLOAD_RANGE + "1e-09"),  # before: every upload a 413
        (["ui", "--max-upload-mb", "0.5"], UPLOAD_RANGE + "0.5"),
        (["ui", "--max-upload-mb", "2e6"], UPLOAD_RANGE + "2000000"),
        (["ui", "--max-upload-mb", "lots"], "error: argument --max-upload-mb: invalid float value"),
        (["ui", "--port", "0", "--no-browser", "--model", "/no/such/model.tflite"], "error: "),
    ],
)
def test_bad_options_give_one_error_line(capsys, argv, message):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors (not a number at all)
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_numbers_are_checked_before_any_work(monkeypatch, capsys):
    """The limits are refused before the web stack is even imported, let alone a model loaded."""
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["ui", "--max-upload-mb", "inf"]) == 2
    assert capsys.readouterr().err == UPLOAD_RANGE + "inf\n"


@pytest.mark.parametrize("mb", ["1", "1024", "1000000"])
def test_limits_in_range_are_accepted(monkeypatch, mb):
    import cunet.ui.server

    seen = {}
    monkeypatch.setattr(cunet.ui.server, "serve", lambda *args: seen.setdefault("args", args))
    assert main(["ui", "--no-browser", "--max-upload-mb", mb]) == 0
    assert seen["args"][-1] == int(float(mb) * 1e6)


def test_without_the_ui_extra_the_message_says_what_to_install(monkeypatch, capsys):
    for name in [m for m in sys.modules if m.startswith(("cunet.ui", "starlette", "uvicorn"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "starlette", None)
    # an unresolvable host: should the import succeed after all, this fails at once instead of serving
    assert main(["ui", "--no-browser", "--host", "no.such.host.invalid"]) == 2
    assert capsys.readouterr().err == (
        'error: starlette is not installed (cunet ui needs it); pip install "cunet[ui]"\n'
    )


def test_help_imports_no_web_stack():
    code = (
        "import sys; from cunet.cli import build_parser; build_parser(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'numpy')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_without_uvicorn_the_message_says_what_to_install(monkeypatch, capsys):
    for name in [m for m in sys.modules if m.startswith(("cunet.ui", "uvicorn"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["ui", "--no-browser", "--host", "no.such.host.invalid"]) == 2
    assert capsys.readouterr().err == (
        'error: uvicorn is not installed (cunet ui needs it); pip install "cunet[ui]"\n'
    )

"""The error family and one-line messages."""

from __future__ import annotations

import signal

import pytest

from cunet.errors import (
    AudioError,
    ConfigError,
    CunetError,
    DataError,
    ExportError,
    Interrupted,
    ModelError,
    UserError,
    one_line,
)


@pytest.mark.parametrize(
    "cls", [AudioError, ConfigError, DataError, ExportError, ModelError, UserError]
)
def test_one_family_that_stays_value_errors(cls: type) -> None:
    assert issubclass(cls, CunetError) and issubclass(cls, ValueError)


def test_interrupted_unwinds_like_ctrl_c() -> None:
    exc = Interrupted(signal.SIGTERM)
    assert isinstance(exc, KeyboardInterrupt) and not isinstance(exc, Exception)
    assert exc.name == "SIGTERM" and exc.signum == signal.SIGTERM
    assert Interrupted(200).name == "signal 200"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("plain ünïcødé 歌", "plain ünïcødé 歌"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("red \x1b[31m bell \x07 del \x7f c1 \x9b", "red \\x1b[31m bell \\x07 del \\x7f c1 \\x9b"),
        ("line\u2028sep\u2029para", "line\\u2028sep\\u2029para"),
        ("byte \udcff from a file name", "byte \\xff from a file name"),
    ],
)
def test_one_line_escapes_what_would_break_the_line(text: str, expected: str) -> None:
    line = one_line(text)
    assert line == expected and len(line.splitlines()) == 1
    line.encode("utf-8")  # printable, even from undecodable file names


def test_one_line_is_bounded() -> None:
    assert len(one_line("x" * 10_000, limit=100)) == 100


def test_messages_name_settings_the_way_the_caller_sets_them() -> None:
    """The library names its parameters; the CLI renders the same error with its options."""
    from cunet.commands import message
    from cunet.errors import AudioError, literal

    exc = AudioError(
        f"{literal('/music/{live}.wav')}: {{start}} 5 s is past the end", names={"start": "start"}
    )
    assert str(exc) == "/music/{live}.wav: start 5 s is past the end"
    assert message(exc) == "/music/{live}.wav: --start 5 s is past the end"
    plain = AudioError("a {brace} stays")  # no named fields: the text as given
    assert str(plain) == message(plain) == "a {brace} stays"


def test_missing_extra_names_the_pip_install() -> None:
    from cunet.errors import MissingExtra, missing_extra

    found = missing_extra(ModuleNotFoundError("no", name="tensorflow"), "cunet train", "train")
    assert isinstance(found, MissingExtra) and isinstance(found, ImportError)
    assert (
        str(found)
        == 'TensorFlow is not installed (cunet train needs it); pip install "cunet[train]"'
    )
    assert 'pip install "cunet[onnx]"' in str(
        missing_extra(ModuleNotFoundError(name="onnxruntime"))
    )
    assert missing_extra(ModuleNotFoundError(name="cunet.nn")) is None  # not an optional dependency

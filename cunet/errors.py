"""The errors cunet shows to users: one family, caught once by `cunet.cli.main`.

Every user-facing error derives from `CunetError`; its message is one line that
names the file or setting at fault. The CLI prints it as `error: <message>`
(through `one_line`, so no name can break the line) and exits with code 2.
Subclasses that were ValueErrors before the family existed still are.
"""

from __future__ import annotations

import re
import signal
import unicodedata
from collections.abc import Mapping


class CunetError(Exception):
    """Base of every error caused by input, files or settings the user gave (not by a bug in cunet).

    A message names the settings at fault as `{field}`s listed in `names` ({field: the API's
    spelling}), e.g. `AudioError("{start} 5 s is past the end", names={"start": "start"})`: the
    library shows the API's spelling, and the CLI shows its option (`render`, e.g. "--start").
    In such a message literal braces are doubled (`literal(text)` for paths and other values)."""

    def __init__(self, message: str = "", *, names: Mapping[str, str] | None = None) -> None:
        self.template = message
        self.names = dict(names or {})
        super().__init__(self.render({}))

    def render(self, options: Mapping[str, str]) -> str:
        """The message with each field named as `options` says (else as the API spells it)."""
        if not self.names:
            return self.template

        def field(match: re.Match[str]) -> str:
            token, name = match.group(0), match.group(1)
            if token in ("{{", "}}"):
                return token[0]
            return options.get(name, self.names[name]) if name in self.names else token

        return re.sub(r"\{\{|\}\}|\{(\w+)\}", field, self.template)


def literal(text: object) -> str:
    """`text` (a path, a value) for a message with named fields: its braces doubled."""
    return str(text).replace("{", "{{").replace("}", "}}")


class UserError(CunetError, ValueError):
    """Bad command-line arguments or API arguments (unknown instrument, empty output directory, ...)."""


class ConfigError(CunetError, ValueError):
    """A configuration file, mapping or setting is invalid; the message names the key or file and line."""


class AudioError(CunetError, ValueError):
    """Audio cannot be read or written."""


class ModelError(CunetError, ValueError):
    """A model file or directory is missing, corrupt, too large or not a cunet model."""


class ExportError(CunetError, ValueError):
    """An export cannot be written (bad settings, output in the way, write failure)."""


class DataError(CunetError, ValueError):
    """A dataset (MUSDB18 root, track, cache) is missing, empty or unreadable."""


class MissingExtra(CunetError, ImportError):
    """An optional dependency is not installed; the message names the `pip install` that brings it."""


# top-level module -> (what it is, the extra that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "tensorflow": ("TensorFlow", "tf"),
    "keras": ("Keras", "tf"),
    "tf_keras": ("Keras", "tf"),
    "tensorboard": ("TensorBoard", "train"),
    "musdb": ("musdb", "train"),
    "museval": ("museval", "train"),
    "pandas": ("pandas", "train"),
    "matplotlib": ("matplotlib", "train"),
    "simplejson": ("museval's simplejson", "train"),
    "onnxruntime": ("ONNX Runtime", "onnx"),
    "onnx": ("onnx", "onnx"),
    "tf2onnx": ("tf2onnx", "onnx"),
    "starlette": ("starlette", "ui"),
    "uvicorn": ("uvicorn", "ui"),
    "mido": ("mido", "synth"),
    "fluidsynth": ("pyfluidsynth", "synth"),
    "ray": ("Ray", "ray"),
    "fsspec": ("fsspec", "ray"),
}


def missing_extra(
    exc: ImportError, needed_for: str = "", tf_extra: str = "tf"
) -> MissingExtra | None:
    """A `MissingExtra` for an ImportError of an optional dependency (None for any other module).

    needed_for: what the user asked for (e.g. "cunet train"); tf_extra: the extra to name when
    TensorFlow or Keras is missing ("train" for training and evaluation, which need more)."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if name not in EXTRAS:
        return None
    what, extra = EXTRAS[name]
    if extra == "tf":
        extra = tf_extra
    purpose = f" ({needed_for} needs it)" if needed_for else ""
    return MissingExtra(f'{what} is not installed{purpose}; pip install "cunet[{extra}]"')


class Interrupted(KeyboardInterrupt):
    """A termination signal (SIGTERM, SIGHUP) arrived: unwinds like Ctrl-C, so partial outputs are removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        """The signal's name, e.g. "SIGTERM"."""
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str, limit: int = 2000) -> str:
    """`text` safe to print as one terminal line: control characters, line separators and undecodable
    bytes (surrogate escapes) become visible escapes such as `\\n`, `\\x1b`; at most `limit` characters."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            code = ord(ch)
            if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode
                code -= 0xDC00
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    line = "".join(out)
    return line if len(line) <= limit else line[: limit - 3] + "..."

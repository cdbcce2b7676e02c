"""The errors cunet shows to users: one family, caught once by `cunet.cli.main`.

Every user-facing error derives from `CunetError`; its message is one line that
names the file or setting at fault. The CLI prints it as `error: <message>`
(through `one_line`, so no name can break the line) and exits with code 2.
Subclasses that were ValueErrors before the family existed still are.
"""

from __future__ import annotations

import signal
import unicodedata


class CunetError(Exception):
    """Base of every error caused by input, files or settings the user gave (not by a bug in cunet)."""


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

"""How the web app reports what goes wrong: one JSON line to the browser, at most one line in the terminal.

Every error answer is `{"error": "one line"}` with a fitting status: 413 for a file too large (for the limit
or for the file system), 507 when the disk is full, 500 for anything unexpected. `ErrorMiddleware` is the
outermost layer of the app and turns every exception no route handled into such an answer and one terminal
line (never a traceback). `QuietLog` keeps floods (a client opening connections by the thousand, garbage
requests) to one terminal line per minute for each kind of message.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..errors import CunetError, one_line

__all__ = [
    "DISK_FULL",
    "LOG",
    "ErrorMiddleware",
    "NoSpace",
    "QuietLog",
    "classify",
    "describe",
    "disk_full",
    "send_json",
]

LOG = logging.getLogger("cunet.ui")
DISK_FULL = (
    "the server's disk is full (no space left for the session's files); free some space, "
    "or start cunet ui with TMPDIR on a bigger disk"
)
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_FULL_TEXTS = ("No space left on device", "Disk quota exceeded")
_LOW_SPACE = 1 << 20  # bytes free below which a failed write is taken for a full disk

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class NoSpace(CunetError):
    """The disk is full (HTTP 507)."""


def disk_full(exc: BaseException, folder: Path | None = None, needed: int = 0) -> bool:
    """Whether `exc`, or an error it was raised from, is a full disk or quota; or, where no error of the
    chain has an error number (libsndfile's write errors say "System error"), whether `folder`'s file system
    has less free than `needed` bytes (what the failed work writes; its partial files are gone by now) or
    1 MiB."""
    seen: set[int] = set()
    current: BaseException | None = exc
    numbered = False
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, NoSpace) or any(text in str(current) for text in _FULL_TEXTS):
            return True
        if isinstance(current, OSError) and current.errno is not None:
            if current.errno in _FULL_ERRNOS:
                return True
            numbered = True
        current = current.__cause__ or current.__context__
    if folder is None or numbered:
        return False
    try:
        return shutil.disk_usage(folder).free < max(needed, _LOW_SPACE)
    except OSError:
        return False


def classify(exc: BaseException, folder: Path | None = None, needed: int = 0) -> tuple[int, str]:
    """(HTTP status, one-line message for the browser) for an error no route handled; `folder` and `needed`
    (bytes): where the failed work wrote, and how much (for `disk_full`)."""
    io_error = isinstance(exc, (CunetError, RuntimeError, OSError))
    if disk_full(exc, folder if io_error else None, needed):
        return 507, DISK_FULL
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return 413, "the file is larger than the server's file system allows"
    if isinstance(exc, OSError):
        reason = exc.strerror or type(exc).__name__
        return 500, f"the server cannot read or write the session's files ({reason})"
    return 500, f"internal error ({type(exc).__name__}); see the terminal"


def describe(exc: BaseException) -> str:
    """One line for the terminal: the exception's type, message and where it was raised (file:line)."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        text += f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})"
    return one_line(text, 500)


async def send_json(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer an HTTP request with `{"error": message}` (one line) and `status`."""
    body = json.dumps({"error": one_line(message)}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ErrorMiddleware:
    """ASGI middleware answering any exception of the app with `classify`'s JSON error, and logging one
    line (method, path without the query, which holds the token, and `describe`) to the `cunet.ui` logger.
    An answer already started cannot change: the connection is dropped. folder: the session's files."""

    def __init__(self, app: Any, folder: Path | None = None) -> None:
        self.app = app
        self.folder = folder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:  # noqa: BLE001 - every error is answered in one JSON line
            status, message = classify(exc, self.folder)
            where = f"{scope.get('method', '')} {one_line(str(scope.get('path', '')), 200)}"
            LOG.error("cunet ui: %s: %d %s [%s]", where, status, message, describe(exc))
            if not started:
                await send_json(send, status, message)


class QuietLog(logging.Filter):
    """A logging filter passing each message (by its first line) at most once per `interval` seconds, as one
    line: its first line, the exception's type and message instead of a traceback, and how many like it were
    dropped since the last one shown."""

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._shown: dict[str, tuple[float, int]] = {}  # first line: (when shown, dropped since)
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            lines = record.getMessage().splitlines()
        except Exception:  # noqa: BLE001 - a malformed record is still shown, as its template
            lines = str(record.msg).splitlines()
        first = one_line(lines[0] if lines else "", 300)
        now = self.clock()
        with self._lock:
            shown, dropped = self._shown.get(first, (None, 0))
            if shown is not None and now - shown < self.interval:
                self._shown[first] = (shown, dropped + 1)
                return False
            if len(self._shown) > 1000:  # many distinct messages: forget the old ones
                self._shown.clear()
            self._shown[first] = (now, 0)
        text = first
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            text += f" ({one_line(f'{type(exc).__name__}: {exc}', 300)})"
        if dropped and shown is not None:
            text += f" (and {dropped} more like it in the last {now - shown:.0f} s)"
        record.msg, record.args = text, None
        record.exc_info = record.exc_text = record.stack_info = None
        return True

"""The connections of `cunet ui`: uvicorn's h11 protocol, bounded so that clients that never finish a request
cannot starve the one holding the token, and with JSON answers to malformed requests.

- A client has `header_timeout` seconds (default 10) to send a complete request head after it connects or
  after its previous answer; then the connection is closed. A request being answered (a long upload, a
  download) is never cut.
- At most `max_connections` are open: a new one past that closes the oldest connection still waiting for a
  request head (first those that never sent one, then idle keep-alive ones); if none waits, the new one
  gets a 503. `connection_cap` keeps that number under the descriptor limit (`raise_open_file_limit`
  first raises the soft limit to the hard one), so accept() never fails for lack of descriptors.
- A malformed request gets a 400 with `{"error": one line}`.
- Closing connections for the cap is logged once (`cunet.ui` logger; `failures.QuietLog` spaces repeats).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .failures import LOG

__all__ = [
    "ACCEPT_BATCH",
    "HEADER_TIMEOUT",
    "MAX_CONNECTIONS",
    "GuardedProtocol",
    "connection_cap",
    "open_descriptors",
    "raise_open_file_limit",
]

HEADER_TIMEOUT = 10.0  # seconds to send a request head
MAX_CONNECTIONS = 1000  # browsers open at most 6 per server; this leaves room for many users
# connections accepted per turn of the event loop (uvicorn's `backlog`): the descriptors a burst can take
# before the cap closes others
ACCEPT_BATCH = 64
# turns a burst's descriptors stay open before the cap's closes free any: asyncio accepts (turn 1), a task
# makes the transport (2), which calls connection_made, where the cap closes the oldest (3); the socket
# is released the turn after, when a new burst may already have been accepted
_BURSTS_IN_FLIGHT = 3
_SPARE_DESCRIPTORS = 64  # for the app's own files: uploads, stems, ffmpeg's pipes
_FILE_LIMIT_WANTED = 8192


def raise_open_file_limit(wanted: int = _FILE_LIMIT_WANTED) -> int:
    """Raise the soft limit of open descriptors (RLIMIT_NOFILE) towards `wanted`, within the hard limit;
    returns the soft limit now in force (`wanted` where it is unlimited or unknown)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # e.g. macOS caps the soft limit lower than its hard one
            pass
    return int(soft)


def open_descriptors() -> int:
    """How many descriptors this process has open (64 if that cannot be counted)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder))
        except OSError:
            continue
    return 64


def connection_cap(limit: int, in_use: int) -> int:
    """The connections to allow with a limit of `limit` descriptors of which `in_use` are open: what is left
    after the accept bursts in flight and a spare for the app's files; at most MAX_CONNECTIONS, at least 8."""
    reserved = _BURSTS_IN_FLIGHT * ACCEPT_BATCH + _SPARE_DESCRIPTORS
    return max(8, min(MAX_CONNECTIONS, limit - in_use - reserved))


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with a head timeout, a connection cap and JSON 400s (module docstring). Use
    `configured(...)`, which gives a subclass with its own limits and register of waiting connections."""

    max_connections = MAX_CONNECTIONS
    header_timeout = HEADER_TIMEOUT
    # connections waiting for a request head, oldest first: never sent one / idle after an answer
    _fresh: dict[GuardedProtocol, None] = {}
    _idle: dict[GuardedProtocol, None] = {}
    _head_timer: asyncio.TimerHandle | None = None

    @classmethod
    def configured(
        cls, max_connections: int = MAX_CONNECTIONS, header_timeout: float = HEADER_TIMEOUT
    ) -> type[GuardedProtocol]:
        """A subclass (for uvicorn's `http=`) with these limits (header_timeout in seconds)."""
        attributes = {
            "max_connections": max_connections,
            "header_timeout": header_timeout,
            "_fresh": {},
            "_idle": {},
        }
        return type("GuardedProtocol", (cls,), attributes)

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.max_connections and not self._make_room():
            self._refuse_busy()
            return
        self._wait_for_head(self._fresh)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:
            self._stop_waiting()  # a request is being answered

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._wait_for_head(self._idle)
        super().on_response_complete()  # may start a pipelined request (`handle_events`)

    def send_400_response(self, msg: str) -> None:
        body = json.dumps(
            {"error": "invalid HTTP request (malformed, or a head over 16 KB)"}
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            for event in (
                h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event) or b"")
        except h11.LocalProtocolError:  # in the middle of another answer: no room for one
            pass
        self.transport.close()

    def _wait_for_head(self, register: dict[GuardedProtocol, None]) -> None:
        self._stop_waiting()
        register[self] = None
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timeout)

    def _stop_waiting(self) -> None:
        self._fresh.pop(self, None)
        self._idle.pop(self, None)
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self in self._fresh or self in self._idle:
            self._close()

    def _close(self) -> None:
        self._stop_waiting()
        if not self.transport.is_closing():
            self.transport.close()

    def _make_room(self) -> bool:
        """Close the oldest connection waiting for a request head; False if none waits."""
        for register in (self._fresh, self._idle):
            if register:
                oldest = next(iter(register))
                oldest._close()
                LOG.warning(
                    "cunet ui: more than %d connections open; closing the oldest that send no request "
                    "(is a client opening connections without using them?)",
                    self.max_connections,
                )
                return True
        return False

    def _refuse_busy(self) -> None:
        body = json.dumps(
            {"error": f"the server is busy ({self.max_connections} requests at once); try again"}
        ).encode()
        head = (
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()
        LOG.warning("cunet ui: %d requests at once; refusing new connections", self.max_connections)

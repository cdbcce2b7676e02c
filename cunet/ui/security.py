"""Access control of the local web app: a random token on every request and a Host header check.

The printed address carries the token (`?token=...`, as Jupyter's does); the page sends it back in the
`X-Cunet-Token` header of its requests and in the query of the addresses it loads (scripts, audio,
downloads). There is no cookie, so a browser never attaches the token on its own: another site's page
cannot make requests with it (no cross-site request forgery). The Host header must name this server
(`allowed_hosts`), so a page on another site cannot reach it by rebinding its own DNS name to 127.0.0.1.
"""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

__all__ = ["HEADER", "TokenHostMiddleware", "allowed_hosts_for", "new_token"]

HEADER = "x-cunet-token"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def new_token() -> str:
    """A fresh random token (192 bits, URL-safe)."""
    return secrets.token_urlsafe(24)


def allowed_hosts_for(host: str, port: int) -> tuple[str, ...]:
    """The Host header values a browser sends to this server: `host:port` for the bound address and, for
    a loopback or wildcard address, the loopback names; for a wildcard address also this machine's names."""
    names = {host}
    if host in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"):
        names |= {"127.0.0.1", "localhost", "::1"}
    if host in ("0.0.0.0", "::"):
        names |= {socket.gethostname(), socket.getfqdn()}
    names -= {"0.0.0.0", "::"}
    return tuple(sorted(f"[{n}]:{port}" if ":" in n else f"{n}:{port}" for n in names))


class TokenHostMiddleware:
    """ASGI middleware refusing (403, JSON `{"error": one line}`) every HTTP request whose Host header is not
    in `allowed_hosts` (case-insensitive) or that does not carry the token in the `X-Cunet-Token` header or
    the `token` query parameter. Websockets are closed (the app has none)."""

    def __init__(self, app: Any, token: str, allowed_hosts: Iterable[str]) -> None:
        if not token:
            raise ValueError("empty token")
        self.app = app
        self.token = token.encode()
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        host = headers.get("host", "").lower()
        if host not in self.allowed_hosts:
            await _refuse(
                send,
                f"this server does not answer to host '{host[:80]}'; open the address "
                "`cunet ui` printed",
            )
            return
        candidates = [headers[HEADER]] if HEADER in headers else []
        candidates += parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [])[
            :1
        ]
        if not candidates:
            await _refuse(
                send,
                "missing access token; open the address `cunet ui` printed (it ends with ?token=...)",
            )
            return
        if not all(
            secrets.compare_digest(c.encode("utf-8", "replace"), self.token) for c in candidates
        ):
            await _refuse(
                send,
                "wrong access token; open the address `cunet ui` printed (it ends with ?token=...)",
            )
            return
        await self.app(scope, receive, send)


async def _refuse(send: Send, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

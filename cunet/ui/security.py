"""Access control of the local web app: a random token on every request and a Host header check.

The printed address carries the token (`?token=...`, as Jupyter's does); the page sends it back in the
`X-Cunet-Token` header of its requests and in the query of the addresses it loads (scripts, audio,
downloads). There is no cookie, so a browser never attaches the token on its own: another site's page
cannot make requests with it (no cross-site request forgery). The Host header must name this server
(`allowed_hosts`), so a page on another site cannot reach it by rebinding its own DNS name to 127.0.0.1.
Listening on every network (`0.0.0.0`, `::`), the server also answers to the IP address a request came in
on: a page can only send that Host if it was itself loaded from that address, so no other site can.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

from .addresses import LOOPBACK_NAMES, WILDCARDS, local_addresses
from .failures import Receive, Scope, Send, send_json

__all__ = ["DEFAULT_PORT", "HEADER", "TokenHostMiddleware", "allowed_hosts_for", "new_token"]

HEADER = "x-cunet-token"
DEFAULT_PORT = 80  # http's: browsers leave it out of the Host header


def new_token() -> str:
    """A fresh random token (192 bits, URL-safe)."""
    return secrets.token_urlsafe(24)


def allowed_hosts_for(
    host: str, port: int, addresses: Iterable[str] | None = None
) -> tuple[str, ...]:
    """The Host header values a browser sends to this server: `host:port` for the bound address and, for a
    loopback or wildcard address, the loopback names; for a wildcard address also this machine's names and
    `addresses` (default: `addresses.local_addresses()`). On port 80 each also without the port."""
    names = {host}
    if host in LOOPBACK_NAMES or host in WILDCARDS:
        names |= set(LOOPBACK_NAMES)
    if host in WILDCARDS:
        names |= {socket.gethostname(), socket.getfqdn()}
        names |= set(local_addresses() if addresses is None else addresses)
    names -= set(WILDCARDS)
    hosts = set()
    for name in names:
        bracketed = f"[{name}]" if ":" in name else name
        hosts.add(f"{bracketed}:{port}")
        if port == DEFAULT_PORT:
            hosts.add(bracketed)
    return tuple(sorted(h.lower() for h in hosts))


class TokenHostMiddleware:
    """ASGI middleware refusing (403, JSON `{"error": one line}`) every HTTP request whose Host header is not
    in `allowed_hosts` (case-insensitive) or, with `local_address`, the IP address the request came in on
    (with its port; without it on port 80), or that does not carry the token in the `X-Cunet-Token` header
    or the `token` query parameter. Websockets are closed (the app has none)."""

    def __init__(
        self, app: Any, token: str, allowed_hosts: Iterable[str], local_address: bool = False
    ) -> None:
        if not token:
            raise ValueError("empty token")
        self.app = app
        self.token = token.encode()
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        self.local_address = local_address

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
        if host not in self.allowed_hosts and not (
            self.local_address and _is_local_address(host, scope.get("server"))
        ):
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


def _is_local_address(host: str, server: Any) -> bool:
    """Whether the Host header `host` is the IP address and port `server` (the socket's own address) that
    the request came in on; an IPv4 client of an IPv6 socket comes in on `::ffff:a.b.c.d`."""
    if not server or len(server) < 2 or server[1] is None:
        return False
    name, port = host, DEFAULT_PORT
    head, colon, tail = host.rpartition(":")
    if colon and tail.isdigit() and (head.endswith("]") or ":" not in head):
        name, port = head, int(tail)
    try:
        ip = ipaddress.ip_address(name[1:-1] if name.startswith("[") else name)
        local = ipaddress.ip_address(str(server[0]).split("%")[0])
    except ValueError:
        return False
    if isinstance(local, ipaddress.IPv6Address) and local.ipv4_mapped is not None:
        local = local.ipv4_mapped
    bracketed = name.startswith("[") and name.endswith("]")
    return ip == local and port == int(server[1]) and bracketed == (ip.version == 6)


async def _refuse(send: Send, message: str) -> None:
    await send_json(send, 403, message)

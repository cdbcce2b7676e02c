"""The connections of `cunet ui` (`cunet.ui.protocol`): uvicorn serving a small app with the guarded protocol
on 127.0.0.1, driven with real sockets; and the descriptor limits."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

uvicorn = pytest.importorskip("uvicorn")

from cunet.ui.protocol import (  # noqa: E402
    ACCEPT_BATCH,
    GuardedProtocol,
    connection_cap,
    open_descriptors,
    raise_open_file_limit,
)

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def app(scope, receive, send):
    """Answers "ok"; /slow after 1 s (a request being answered)."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(1.0)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def serve() -> Iterator:
    """serve(max_connections, header_timeout) -> the port of a running server (stopped after the test)."""
    servers = []

    def start(max_connections: int = 1000, header_timeout: float = 10.0) -> int:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(ACCEPT_BATCH)
        config = uvicorn.Config(
            app,
            http=GuardedProtocol.configured(max_connections, header_timeout),
            ws="none",
            lifespan="off",
            log_config=None,
            backlog=ACCEPT_BATCH,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        servers.append((server, thread, sock))
        return sock.getsockname()[1]

    yield start
    for server, thread, sock in servers:
        server.should_exit = True
        thread.join(10)
        sock.close()


def connect(port: int, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if data:
        sock.sendall(data)
    return sock


def answer(sock: socket.socket) -> bytes:
    """The next answer on `sock` (head and body)."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` within `seconds`."""
    readable, _, _ = select.select([sock], [], [], seconds)
    if not readable:
        return False
    try:
        return sock.recv(1) == b""
    except OSError:
        return True


def test_a_client_must_send_its_request_head_in_time(serve):
    port = serve(header_timeout=0.3)
    silent, partial = connect(port), connect(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    start = time.monotonic()
    assert closed_within(silent, 5) and closed_within(partial, 5)
    assert time.monotonic() - start < 3  # not uvicorn's keep-alive timeout (5 s): the head timeout
    with connect(port, REQUEST) as reused:  # after an answer the clock starts again
        assert answer(reused).endswith(b"ok")
        reused.sendall(b"GET / HTTP/1.1\r\n")
        assert closed_within(reused, 3)
    with connect(port, b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") as slow:
        assert answer(slow).endswith(
            b"ok"
        )  # an answer taking longer than the head timeout is not cut
    silent.close()
    partial.close()


def test_past_the_cap_the_oldest_idle_connection_makes_room(serve):
    port = serve(max_connections=4)
    idle = [connect(port, b"GET / HTTP/1.1\r\n") for _ in range(4)]
    time.sleep(0.2)  # registered, oldest first
    with connect(port, REQUEST) as user:
        assert answer(user).startswith(b"HTTP/1.1 200")
    assert closed_within(idle[0], 2)
    assert not any(closed_within(sock, 0.1) for sock in idle[2:])
    for sock in idle:
        sock.close()


def test_when_every_connection_is_being_answered_a_new_one_gets_a_json_503(serve):
    port = serve(max_connections=2)
    busy = [connect(port, b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") for _ in range(2)]
    time.sleep(0.2)
    with connect(port, REQUEST) as late:
        head, _, body = answer(late).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503") and b"application/json" in head
    assert "server is busy" in json.loads(body)["error"]
    for sock in busy:  # those being answered are never cut
        assert answer(sock).endswith(b"ok")
        sock.close()


def test_a_malformed_request_gets_a_json_400(serve):
    port = serve()
    for garbage in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"GET /\r\n\r\n"):
        with connect(port, garbage) as sock:
            head, _, body = answer(sock).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head
        assert json.loads(body) == {
            "error": "invalid HTTP request (malformed, or a head over 16 KB)"
        }


def test_the_cap_leaves_descriptors_for_accept_bursts_and_the_app():
    assert connection_cap(1024, 30) == 1024 - 30 - 3 * ACCEPT_BATCH - 64
    assert connection_cap(1 << 20, 30) == 1000
    assert connection_cap(150, 40) == 8
    assert 0 < open_descriptors() < 1000


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one():
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (256, 512)); "
        "from cunet.ui.protocol import raise_open_file_limit; "
        "print(raise_open_file_limit(), resource.getrlimit(resource.RLIMIT_NOFILE))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split(maxsplit=1) == ["512", "(512, 512)\n"]
    assert raise_open_file_limit() >= 256

"""Token and Host checks of the web app (`cunet.ui.security`), on a minimal ASGI app."""

from __future__ import annotations

import socket

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.applications import Starlette  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from cunet.ui.security import TokenHostMiddleware, allowed_hosts_for, new_token  # noqa: E402

TOKEN = "s3cret-token"


@pytest.fixture
def client():
    async def hello(request):
        return PlainTextResponse("hello")

    app = Starlette(routes=[Route("/", hello, methods=["GET", "POST", "DELETE"])])
    app.add_middleware(
        TokenHostMiddleware, token=TOKEN, allowed_hosts=["127.0.0.1:8765", "localhost:8765"]
    )
    return TestClient(app, base_url="http://127.0.0.1:8765")


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_the_token_in_the_header_or_the_query_lets_a_request_through(client, method):
    assert client.request(method, "/", headers={"X-Cunet-Token": TOKEN}).text == "hello"
    assert client.request(method, "/", params={"token": TOKEN}).text == "hello"
    assert (
        client.request(
            method, "/", params={"token": TOKEN}, headers={"host": "LOCALHOST:8765"}
        ).text
        == "hello"
    )


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
@pytest.mark.parametrize(
    "headers, params, message",
    [
        ({}, {}, "missing access token"),
        ({"X-Cunet-Token": ""}, {}, "wrong access token"),
        ({"X-Cunet-Token": TOKEN[:-1]}, {}, "wrong access token"),
        ({"X-Cunet-Token": TOKEN + "x"}, {}, "wrong access token"),
        ({}, {"token": TOKEN.upper()}, "wrong access token"),
        (
            {"X-Cunet-Token": TOKEN},
            {"token": "other"},
            "wrong access token",
        ),  # both given: both must be right
        (
            {"cookie": f"cunet_token={TOKEN}"},
            {},
            "missing access token",
        ),  # a cookie is never enough
        ({"X-Cunet-Token": "t\u00f6k\u00e9n".encode("latin-1")}, {}, "wrong access token"),
    ],
)
def test_requests_without_the_right_token_are_refused(client, method, headers, params, message):
    r = client.request(method, "/", headers=headers, params=params)
    assert r.status_code == 403 and message in r.json()["error"]


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8765",
        "127.0.0.1",
        "127.0.0.1:8766",
        "localhost.evil.example:8765",
        "",
    ],
)
def test_other_host_names_are_refused_even_with_the_token(client, host):
    """A page on another site whose DNS name was rebound to 127.0.0.1 sends its own name as Host."""
    r = client.get("/", headers={"host": host, "X-Cunet-Token": TOKEN})
    assert r.status_code == 403 and "does not answer to host" in r.json()["error"]


def test_allowed_hosts_for_loopback_and_wildcard_addresses():
    assert allowed_hosts_for("127.0.0.1", 8765) == (
        "127.0.0.1:8765",
        "[::1]:8765",
        "localhost:8765",
    )
    assert "192.168.1.5:80" in allowed_hosts_for("192.168.1.5", 80)
    assert "localhost:80" not in allowed_hosts_for("192.168.1.5", 80)
    wildcard = allowed_hosts_for("0.0.0.0", 9000, addresses=["192.168.1.5", "fd00::2"])
    assert {"127.0.0.1:9000", "192.168.1.5:9000", "[fd00::2]:9000"} <= set(wildcard)
    assert not any(h.startswith("0.0.0.0") for h in wildcard)
    assert "192.168.1.5:9000" not in allowed_hosts_for("127.0.0.1", 9000)


def test_a_wildcard_address_answers_to_this_machines_own_addresses():
    from cunet.ui.addresses import local_addresses, outbound_address

    addresses = local_addresses()
    assert {"127.0.0.1", "::1"} <= addresses
    outbound = outbound_address(socket.AF_INET)
    if outbound is not None:  # a machine with a network: its address is among them, and accepted
        assert outbound in addresses and f"{outbound}:9000" in allowed_hosts_for("0.0.0.0", 9000)


@pytest.mark.parametrize(
    "host, answered",
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("[::1]", True),
        ("127.0.0.1:80", True),
        ("LOCALHOST:80", True),
        ("127.0.0.1:8080", False),
        ("evil.example", False),
        ("evil.example:80", False),
    ],
)
def test_on_port_80_the_host_without_its_port_is_accepted(host, answered):
    """Browsers leave the scheme's default port out of the Host header."""
    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("hello"))])
    app.add_middleware(
        TokenHostMiddleware, token=TOKEN, allowed_hosts=allowed_hosts_for("127.0.0.1", 80)
    )
    r = TestClient(app).get("/", headers={"host": host, "X-Cunet-Token": TOKEN})
    assert r.status_code == (200 if answered else 403)


@pytest.mark.parametrize(
    "server, host, answered",
    [
        ("http://192.168.7.9:8765", "192.168.7.9:8765", True),  # the address it came in on
        ("http://192.168.7.9:8765", "192.168.7.9", False),  # without its port (not 80)
        ("http://192.168.7.9:80", "192.168.7.9", True),
        ("http://192.168.7.9:8765", "192.168.7.10:8765", False),  # another machine
        ("http://192.168.7.9:8765", "192.168.7.9:8766", False),
        ("http://[fd00::7]:8765", "[FD00::7]:8765", True),
        ("http://[fd00::7]:8765", "fd00::7:8765", False),
        ("http://192.168.7.9:8765", "evil.example:8765", False),  # a name: DNS could be rebound
    ],
)
def test_every_network_answers_to_the_address_a_request_came_in_on(server, host, answered):
    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("hello"))])
    app.add_middleware(TokenHostMiddleware, token=TOKEN, allowed_hosts=[], local_address=True)
    r = TestClient(app, base_url=server).get("/", headers={"host": host, "X-Cunet-Token": TOKEN})
    assert r.status_code == (200 if answered else 403)


def test_tokens_are_random_and_long():
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(len(t) >= 32 for t in tokens)
    with pytest.raises(ValueError):
        TokenHostMiddleware(None, "", ["x"])

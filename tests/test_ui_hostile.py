"""`cunet ui` against a hostile tester, through the real server (a `cunet ui` process, real sockets): a full
disk, unexpected errors, malformed requests, every network, port 80, floods of idle connections, long
non-ASCII names, and the browser's command line."""

from __future__ import annotations

import io
import ipaddress
import json
import os
import re
import resource
import select
import signal
import socket
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

ROOT = Path(__file__).resolve().parents[1]

# `cunet ui` with a disk that fills after 64 KB of an upload, and two request paths that fail unexpectedly
PATCHED = r"""
import builtins, errno, sys
import cunet.ui.uploads as uploads
from cunet.ui.jobs import Jobs

class FullDisk:
    def __init__(self, f):
        self.f, self.n = f, 0
    def write(self, data):
        self.n += len(data)
        if self.n > 65536:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.f.write(data)
    def flush(self):
        self.f.flush()
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.f.close()

uploads.open = lambda *args, **kwargs: FullDisk(builtins.open(*args, **kwargs))
get = Jobs.get
def failing_get(self, song_id):
    if song_id == "bug":
        raise ZeroDivisionError("division by zero")
    if song_id == "eio":
        raise OSError(errno.EIO, "Input/output error")
    return get(self, song_id)
Jobs.get = failing_get
from cunet.cli import main
sys.exit(main(sys.argv[1:]))
"""


class Server:
    """A `cunet ui` process (any free port unless given, no browser): its printed address and output."""

    def __init__(self, tmp_path: Path, *args: str, code: str | None = None, env=None, **popen):
        command = [sys.executable, *(["-c", code] if code else ["-m", "cunet"]), "ui"]
        if "--port" not in args:
            command += ["--port", "0"]
        if "--browser" not in args:
            command += ["--no-browser"]
        args = tuple(a for a in args if a != "--browser")
        env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc = subprocess.Popen(
            command + list(args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
            **popen,
        )
        line = self.proc.stdout.readline()
        match = re.search(r"open (http://(.+?)(?::(\d+))?/\?token=([\w-]+))$", line.strip())
        assert match, (line, self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.url, host, port, self.token = match.groups()
        self.host = host.strip("[]")
        self.port = int(port or 80)
        self.base = self.url.split("/?token=")[0]
        self.lines = [line]

    def get(self, path: str, host: str | None = None, **kwargs) -> httpx.Response:
        headers = {"X-Cunet-Token": self.token, **({"host": host} if host else {})}
        return httpx.get(self.base + path, headers=headers, **{"timeout": 30, **kwargs})

    def upload(self, data: bytes, name: str) -> httpx.Response:
        return httpx.post(
            self.base + "/api/songs",
            params={"name": name, "instruments": "bass"},
            content=data,
            headers={"X-Cunet-Token": self.token},
            timeout=60,
        )

    def stop(self) -> tuple[str, str]:
        """Ctrl-C; (the rest of stdout, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=30)
        return out, err


def wav(seconds: float) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros((int(44100 * seconds), 2), np.int16), 44100, format="WAV")
    return buf.getvalue()


def raw_request(port: int, request: bytes) -> tuple[int, dict]:
    """Send `request` bytes on a new connection; (status, JSON body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"application/json" in head, data
    return int(head.split()[1]), json.loads(body)


def outside_address(family: socket.AddressFamily = socket.AF_INET) -> str | None:
    """A non-loopback address of this machine (the one it sends from), or None."""
    target = "192.0.2.1" if family == socket.AF_INET else "2001:db8::1"
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 9))
            address = probe.getsockname()[0]
    except OSError:
        return None
    ip = ipaddress.ip_address(address)
    return None if ip.is_loopback or ip.is_link_local or ip.is_unspecified else address


def test_a_full_disk_during_an_upload_is_a_507_in_one_json_line(tmp_path):
    server = Server(tmp_path, code=PATCHED)
    try:
        r = server.upload(wav(3.0), "big.wav")
        assert r.status_code == 507 and r.headers["content-type"] == "application/json"
        assert r.json() == {
            "error": "the server's disk is full (no space left for the session's files); free some "
            "space, or start cunet ui with TMPDIR on a bigger disk"
        }
        [workdir] = tmp_path.glob("cunet-ui-*")
        assert sorted(p.name for p in workdir.iterdir()) == ["pid"]  # nothing half-written is left
        assert server.upload(wav(0.2), "small.wav").status_code == 201  # what fits is accepted
        assert server.get("/api/songs").status_code == 200
    finally:
        _, err = server.stop()
    assert "Traceback" not in err
    assert err.splitlines()[:1] == [
        "cunet ui: POST /api/songs: 507 the server's disk is full (no space left for the session's "
        "files); free some space, or start cunet ui with TMPDIR on a bigger disk"
    ]


def test_every_error_is_one_json_line_and_one_terminal_line(tmp_path):
    server = Server(tmp_path, code=PATCHED)
    try:
        r = server.get("/api/songs/bug")
        assert (r.status_code, r.json()) == (
            500,
            {"error": "internal error (ZeroDivisionError); see the terminal"},
        )
        r = server.get("/api/songs/eio")
        assert r.status_code == 500 and r.json() == {
            "error": "the server cannot read or write the session's files (Input/output error)"
        }
        for path, status in (("/nowhere", 404), ("/api/songs/x/zip?format=ogg", 404)):
            r = server.get(path)
            assert r.status_code == status and set(r.json()) == {"error"}
        assert (
            httpx.put(server.base + "/api/songs", params={"token": server.token}).status_code == 405
        )
        for garbage in (b"NOT HTTP\r\n\r\n", b"GET / HTTP/1.1\r\nbad header\r\n\r\n"):
            status, body = raw_request(server.port, garbage)
            assert status == 400 and body["error"].startswith("invalid HTTP request")
        status, body = raw_request(
            server.port, b"GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
        )
        assert status == 403 and "does not answer to host" in body["error"]
    finally:
        _, err = server.stop()
    lines = err.splitlines()
    assert "Traceback" not in err and len(lines) == 4, lines  # 2 errors, 1 for both garbage, stop
    assert lines[0].startswith(
        "cunet ui: GET /api/songs/bug: 500 internal error (ZeroDivisionError); see the terminal "
        "[ZeroDivisionError: division by zero (at <string>:"
    )
    assert lines[1].startswith("cunet ui: GET /api/songs/eio: 500 the server cannot read or write")
    assert "Invalid HTTP request received." in lines[2]
    assert server.token not in err


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::"])
def test_every_network_answers_this_machines_addresses_and_prints_one_others_can_use(
    tmp_path, wildcard
):
    if wildcard == "::":
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::", 0))
        except OSError:
            pytest.skip("no IPv6 here")
    server = Server(tmp_path, "--host", wildcard)
    try:
        note = server.proc.stdout.readline()
        assert note.strip() == (
            f"cunet ui: listening on every network ({wildcard}): anyone on the network who has "
            "this address can use it"
        )
        family = socket.AF_INET if wildcard == "0.0.0.0" else socket.AF_INET6
        expected = outside_address(family) or (
            outside_address(socket.AF_INET) if wildcard == "::" else None
        )
        if expected is not None:  # the address printed is one other machines can reach
            assert ipaddress.ip_address(server.host) == ipaddress.ip_address(expected)
        assert server.get("/api/songs").json() == []  # through the printed address, with its Host
        loopback = f"http://127.0.0.1:{server.port}/api/songs"
        assert httpx.get(loopback, headers={"X-Cunet-Token": server.token}).status_code == 200
        for host in (
            f"evil.example:{server.port}",
            f"203.0.113.7:{server.port}",
        ):  # not this machine
            r = server.get("/api/songs", host=host)
            assert r.status_code == 403 and "does not answer to host" in r.json()["error"]
    finally:
        server.stop()


def test_one_address_answers_that_address(tmp_path):
    address = outside_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    server = Server(tmp_path, "--host", address)
    try:
        assert server.host == address
        assert server.get("/api/songs").status_code == 200
        assert server.get("/api/songs", host=f"evil.example:{server.port}").status_code == 403
    finally:
        server.stop()


def test_port_80_accepts_the_host_browsers_send_without_the_port(tmp_path):
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 80))
    except OSError as exc:
        pytest.skip(f"cannot listen on port 80 here ({exc.strerror})")
    server = Server(tmp_path, "--port", "80")
    try:
        assert server.url.startswith("http://127.0.0.1/?token=")
        for host in ("127.0.0.1", "localhost", "127.0.0.1:80", "LOCALHOST"):
            assert server.get("/api/songs", host=host).status_code == 200, host
        for host in ("127.0.0.1:81", "evil.example"):
            assert server.get("/api/songs", host=host).status_code == 403, host
    finally:
        server.stop()


def _lower_descriptor_limit() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limit = 256 if hard == resource.RLIM_INFINITY else min(256, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


def test_a_flood_of_idle_connections_leaves_the_token_holder_answered_and_the_terminal_quiet(
    tmp_path,
):
    """300 connections that never finish their request head, against a server allowed 256 descriptors."""
    server = Server(tmp_path, preexec_fn=_lower_descriptor_limit)
    flood: list[socket.socket] = []
    try:
        start = time.monotonic()
        for _ in range(300):
            sock = socket.socket()
            flood.append(sock)
            sock.settimeout(5)
            try:
                sock.connect(("127.0.0.1", server.port))
                sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
            except OSError:  # closed by the server meanwhile: what it should do
                pass
        for _ in range(3):
            r = server.get("/api/songs", timeout=5)
            assert r.status_code == 200 and r.json() == []
        readable, _, _ = select.select(flood, [], [], 1.0)
        closed = sum(_closed(sock) for sock in readable)
        assert time.monotonic() - start < 20
    finally:
        for sock in flood:
            sock.close()
        _, err = server.stop()
    lines = err.splitlines()
    assert "Traceback" not in err and "Too many open files" not in err
    assert len(lines) <= 3, lines  # the flood, said once; the stop
    cap = int(re.search(r"more than (\d+) connections open", lines[0]).group(1))
    assert cap < 256 and closed >= len(flood) - cap - 10  # the oldest idle ones were closed


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except OSError:
        return True


def test_a_long_non_ascii_name_downloads_in_names_of_at_most_255_bytes(tmp_path):
    server = Server(tmp_path)
    name = "\u00e9" * 250 + ".wav"
    try:
        song = server.upload(wav(1.0), name).json()
        assert len(song["name"].encode()) <= 200
        deadline = time.monotonic() + 60
        while server.get(f"/api/songs/{song['id']}").json()["state"] != "done":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = server.get(f"/api/songs/{song['id']}/zip", params={"format": "wav"})
        filename = unquote(r.headers["content-disposition"].split("filename*=utf-8''")[1])
        assert filename.endswith(" - stems (wav).zip") and len(filename.encode()) <= 255
        (tmp_path / filename).write_bytes(r.content)  # a name this file system takes
        with zipfile.ZipFile(io.BytesIO(r.content)) as z:
            z.extractall(
                tmp_path / "unzipped"
            )  # the folder name fits (before: 400 bytes, ENAMETOOLONG)
            [entry] = z.namelist()
        folder, stem = entry.split("/")
        assert stem == "bass.wav" and set(folder) == {"\u00e9"} and len(folder.encode()) <= 255
        r = server.get(f"/api/songs/{song['id']}/stems/bass.flac", params={"download": "1"})
        filename = unquote(r.headers["content-disposition"].split("filename*=utf-8''")[1])
        assert filename.endswith(" - bass.flac") and len(filename.encode()) <= 255
        (tmp_path / filename).write_bytes(r.content)
    finally:
        server.stop()


def test_the_browser_is_given_a_private_file_never_the_token(tmp_path):
    record = tmp_path / "browser.json"
    browser = tmp_path / "fake-browser"
    browser.write_text(
        f"#!{sys.executable}\n"
        "import json, os, stat, sys\n"
        "path = sys.argv[1].removeprefix('file://')\n"
        "info = {'argv': sys.argv, 'path': path, 'mode': stat.S_IMODE(os.stat(path).st_mode),\n"
        "        'folder_mode': stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode),\n"
        "        'html': open(path).read()}\n"
        f"open({str(record)!r} + '.part', 'w').write(json.dumps(info))\n"
        f"os.replace({str(record)!r} + '.part', {str(record)!r})\n"
    )
    browser.chmod(0o700)
    env = {"BROWSER": str(browser), "DISPLAY": ":99", "WAYLAND_DISPLAY": ""}
    server = Server(tmp_path, "--browser", env=env)
    try:
        deadline = time.monotonic() + 20
        while not record.exists():
            assert time.monotonic() < deadline, "the browser was not started"
            time.sleep(0.05)
        info = json.loads(record.read_text())
        assert server.token not in " ".join(info["argv"]) and info["argv"][1].startswith("file://")
        assert (info["mode"], info["folder_mode"]) == (0o600, 0o700)
        assert f"location.replace({json.dumps(server.url)})" in info["html"]
        assert Path(info["path"]).is_file()
        if Path("/proc").is_dir():  # no process has the token on its command line
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    assert server.token.encode() not in cmdline.read_bytes(), cmdline
                except OSError:  # the process ended
                    pass
    finally:
        server.stop()
    assert not Path(info["path"]).exists()  # removed when the server stops
    assert stat.S_ISDIR(tmp_path.stat().st_mode) and not list(tmp_path.glob("cunet-ui-*"))

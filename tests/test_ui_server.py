"""Running the app (`cunet.ui.server`): binding, the printed address, clean-up; `cunet ui` end to end."""

from __future__ import annotations

import errno
import io
import ipaddress
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from cunet.errors import UserError  # noqa: E402
from cunet.ui.addresses import outbound_address, shown_host  # noqa: E402
from cunet.ui.server import bind, page_url, remove_stale_workdirs, write_opener  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_bind_any_free_port_and_a_clear_message_for_a_busy_one():
    sock = bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        assert port > 0
        with pytest.raises(
            UserError, match=rf"cannot listen on 127.0.0.1:{port}: .*choose another with --port"
        ):
            bind("127.0.0.1", port)
    finally:
        sock.close()
    with pytest.raises(UserError, match="cannot bind to host 'no.such.host.invalid'"):
        bind("no.such.host.invalid", 0)


def test_page_url():
    assert page_url("127.0.0.1", 8765, "abc") == "http://127.0.0.1:8765/?token=abc"
    assert page_url("192.168.1.5", 80, "t") == "http://192.168.1.5/?token=t"  # as browsers write it
    assert page_url("::1", 8080, "t") == "http://[::1]:8080/?token=t"


def test_shown_host_is_one_other_machines_can_reach():
    assert shown_host("127.0.0.1") == "127.0.0.1" and shown_host("myhost.lan") == "myhost.lan"
    shown = ipaddress.ip_address(shown_host("0.0.0.0"))
    assert shown.version == 4 and not shown.is_unspecified and not shown.is_link_local
    assert shown.is_loopback == (outbound_address(socket.AF_INET) is None)


def test_the_opener_file_is_private_and_redirects_to_the_page(tmp_path):
    url = "http://127.0.0.1:8765/?token=abc-_123"
    path = write_opener(tmp_path, url)
    text = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert 'content="0;url=http://127.0.0.1:8765/?token=abc-_123"' in text
    assert 'location.replace("http://127.0.0.1:8765/?token=abc-_123")' in text
    with pytest.raises(FileExistsError):  # never follows or reuses a file put there
        write_opener(tmp_path, url)
    (tmp_path / "other").mkdir()  # a URL cannot end the script early
    assert "\\u003c/script>" in write_opener(tmp_path / "other", "http://h/</script>").read_text()


def test_stale_session_folders_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for name, pid in (
        ("cunet-ui-dead", dead.pid),
        ("cunet-ui-alive", os.getpid()),
        ("cunet-ui-nopid", None),
    ):
        (tmp_path / name).mkdir()
        if pid is not None:
            (tmp_path / name / "pid").write_text(str(pid))
    (tmp_path / "other").mkdir()
    remove_stale_workdirs(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cunet-ui-alive",
        "cunet-ui-nopid",
        "other",
    ]


def _start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cunet", "ui", "--port", "0", "--no-browser", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    line = proc.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:(\d+)/\?token=([\w-]+))$", line.strip())
    assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, match.group(1)


@pytest.mark.parametrize("stop, code", [(signal.SIGINT, 0), (signal.SIGTERM, 128 + signal.SIGTERM)])
def test_cunet_ui_serves_the_page_and_deletes_its_files_on_exit(tmp_path, stop, code):
    proc, url = _start(tmp_path)
    try:
        base, token = url.split("/?token=")
        with httpx.Client(base_url=base, headers={"X-Cunet-Token": token}, timeout=30) as client:
            assert "cunet" in client.get("/").text
            assert client.get("/", headers={"X-Cunet-Token": "nope"}).status_code == 403
            port = base.rsplit(":", 1)[1]
            assert client.get("/", headers={"host": f"attacker.example:{port}"}).status_code == 403
            buf = io.BytesIO()
            sf.write(buf, np.zeros((44100, 2), np.float32), 44100, format="WAV")
            song = client.post(
                "/api/songs",
                params={"name": "quiet.wav", "instruments": "bass"},
                content=buf.getvalue(),
            ).json()
            deadline = time.monotonic() + 60
            while client.get(f"/api/songs/{song['id']}").json()["state"] != "done":
                assert time.monotonic() < deadline
                time.sleep(0.05)
        [workdir] = tmp_path.glob("cunet-ui-*")
        assert (workdir / song["id"] / "stems" / "bass.wav").is_file()
        proc.send_signal(stop)
        assert proc.wait(timeout=30) == code
        assert not list(tmp_path.glob("cunet-ui-*"))  # every file of the session is deleted
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", int(port)), timeout=2).close()
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert "Traceback" not in err
    assert (
        ("cunet ui: stopped" in err)
        if stop == signal.SIGINT
        else ("error: interrupted (SIGTERM)" in err)
    )


def test_stopping_while_a_song_separates_deletes_its_files(tmp_path):
    proc, url = _start(tmp_path)
    try:
        base, token = url.split("/?token=")
        buf = io.BytesIO()
        sf.write(buf, np.zeros((44100 * 240, 2), np.int16), 44100, format="WAV", subtype="PCM_16")
        with httpx.Client(base_url=base, headers={"X-Cunet-Token": token}, timeout=60) as client:
            song = client.post(
                "/api/songs", params={"name": "long.wav"}, content=buf.getvalue()
            ).json()
            deadline = time.monotonic() + 60
            while client.get(f"/api/songs/{song['id']}").json()["state"] != "separating":
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert list(tmp_path.glob(f"cunet-ui-*/{song['id']}/input.wav"))
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert time.monotonic() - start < 30
        assert not list(tmp_path.glob("cunet-ui-*"))
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_full_temporary_folder_at_start_is_one_error(monkeypatch, tmp_path):
    import cunet.ui.server as server

    def full(prefix):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(server.Separator, "from_pretrained", staticmethod(lambda model: object()))
    monkeypatch.setattr(server.tempfile, "mkdtemp", full)
    monkeypatch.setattr(server, "remove_stale_workdirs", lambda: None)
    with pytest.raises(UserError, match="cannot create the session's folder in .*: No space left"):
        server.serve("127.0.0.1", 0, open_browser=False)

"""Running the web app: bind the socket, load the model, print the address, serve until Ctrl-C, clean up.

The songs' files live in a fresh temporary folder (`cunet-ui-*`) removed on exit; folders that earlier
sessions killed before they could clean up (their process no longer runs) are removed at start.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import webbrowser
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..io.atomic import pid_alive
from ..separator import Separator
from .app import DEFAULT_MAX_UPLOAD, create_app
from .security import allowed_hosts_for, new_token

__all__ = ["bind", "page_url", "remove_stale_workdirs", "serve"]

WORKDIR_PREFIX = "cunet-ui-"
_PID_FILE = "pid"


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port); UserError with a hint if that fails."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserError(f"cannot bind to host '{host}': {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(64)
    except OSError as exc:
        sock.close()
        hint = (
            "; choose another with --port (0: any free port)"
            if exc.errno == errno.EADDRINUSE
            else ""
        )
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
    return sock


def page_url(host: str, port: int, token: str) -> str:
    """The address to open: loopback for a wildcard host."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/?token={token}"


def remove_stale_workdirs(parent: Path | None = None) -> None:
    """Delete `cunet-ui-*` folders in the temporary folder whose session's process no longer runs."""
    parent = Path(parent or tempfile.gettempdir())
    for folder in parent.glob(f"{WORKDIR_PREFIX}*"):
        try:
            pid = int((folder / _PID_FILE).read_text())
        except (OSError, ValueError):
            continue
        if pid != os.getpid() and not pid_alive(pid):
            shutil.rmtree(folder, ignore_errors=True)


def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    model: str | None = None,
    open_browser: bool = True,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
) -> None:
    """Serve `cunet ui` until interrupted. Loads the model (None: the shipped one) before printing the address."""
    import uvicorn

    sock = bind(host, port)
    workdir: Path | None = None
    try:
        separator = Separator.from_pretrained(model)
        port = sock.getsockname()[1]
        token = new_token()
        remove_stale_workdirs()
        workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        (workdir / _PID_FILE).write_text(str(os.getpid()))
        label = Path(model).name if model else "shipped model"
        app = create_app(
            separator, workdir, token, allowed_hosts_for(host, port), max_upload_bytes, label
        )
        url = page_url(host, port, token)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=3,
            )
        )
        print(
            f"cunet ui: open {url}\n(Ctrl-C stops the server and deletes the session's files)",
            flush=True,
        )
        if open_browser and _has_display():
            threading.Thread(target=_open, args=(server, url), daemon=True).start()
        server.run(sockets=[sock])
    finally:
        sock.close()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def _has_display() -> bool:
    """A graphical browser can open (else `webbrowser` could start a text browser in this terminal)."""
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


def _open(server: Any, url: str) -> None:
    """Open the page once the server answers (quietly nothing where no browser is available)."""
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    try:
        webbrowser.open(url)
    except Exception:  # noqa: BLE001 - no browser is fine: the address was printed
        pass

"""Running the web app: bind the socket, load the model, print the address, serve until Ctrl-C, clean up.

The songs' files live in a fresh temporary folder (`cunet-ui-*`, private to the user) removed on exit;
folders that earlier sessions killed before they could clean up (their process no longer runs) are removed
at start. The browser is given a file in that folder that redirects to the address with the token
(`write_opener`), never the address itself: a command line is visible to every local user (`ps`).
"""

from __future__ import annotations

import contextlib
import errno
import html
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import webbrowser
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..io.atomic import pid_alive
from ..separator import Separator
from .addresses import WILDCARDS, shown_host
from .app import DEFAULT_MAX_UPLOAD, create_app
from .failures import LOG, QuietLog
from .security import DEFAULT_PORT, allowed_hosts_for, new_token
from .separation import warm_up

__all__ = ["bind", "page_url", "quiet_logs", "remove_stale_workdirs", "serve", "write_opener"]

WORKDIR_PREFIX = "cunet-ui-"
_PID_FILE = "pid"
OPENER = "open.html"
# loggers that floods reach: uvicorn's (malformed requests), asyncio's (accept errors), the app's
_QUIET_LOGGERS = ("uvicorn.error", "asyncio", LOG.name)


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
    """The address to open on `host` (as `addresses.shown_host` gives it); port 80 is left out, as browsers
    do."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}{'' if port == DEFAULT_PORT else f':{port}'}/?token={token}"


def write_opener(folder: Path, url: str) -> Path:
    """A new HTML file `folder/open.html` (mode 0600) that sends the browser on to `url`; the browser is
    started on this file, so `url` and its token are in no command line."""
    quoted, script = html.escape(url), json.dumps(url).replace("<", "\\u003c")
    text = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="0;url={quoted}"><title>cunet ui</title></head>\n'
        f"<body><script>location.replace({script});</script>"
        f'<p><a href="{quoted}">Open cunet ui</a></p></body></html>\n'
    )
    path = folder / OPENER
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


@contextlib.contextmanager
def quiet_logs(interval: float = 60.0) -> Iterator[None]:
    """Meanwhile uvicorn's, asyncio's and the app's log messages are one line each, each at most once per
    `interval` seconds (`failures.QuietLog`), and the app's are shown on stderr."""
    quiet = QuietLog(interval)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    for logger in loggers:
        logger.addFilter(quiet)
    LOG.addHandler(handler)
    propagate, LOG.propagate = LOG.propagate, False
    try:
        yield
    finally:
        LOG.propagate = propagate
        LOG.removeHandler(handler)
        for logger in loggers:
            logger.removeFilter(quiet)


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
    """Serve `cunet ui` until interrupted. Loads the model (None: the shipped one) and warms it up
    (`separation.warm_up`) before printing the address. max_upload_bytes: the largest upload, in bytes (at
    least 1)."""
    import uvicorn

    from .protocol import (
        ACCEPT_BATCH,
        GuardedProtocol,
        connection_cap,
        open_descriptors,
        raise_open_file_limit,
    )

    if max_upload_bytes < 1:
        raise UserError(f"the upload limit must be at least 1 byte, got {max_upload_bytes}")
    sock = bind(host, port)
    workdir: Path | None = None
    try:
        separator = Separator.from_pretrained(model)
        port = sock.getsockname()[1]
        token = new_token()
        remove_stale_workdirs()
        try:
            workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
            (workdir / _PID_FILE).write_text(str(os.getpid()))
        except OSError as exc:
            raise UserError(
                f"cannot create the session's folder in {tempfile.gettempdir()}: {exc.strerror} "
                "(TMPDIR chooses another)"
            ) from None
        warm_up(separator)  # before serving: nothing else runs while the engine mutes native stderr
        label = Path(model).name if model else "shipped model"
        everywhere = host in WILDCARDS
        app = create_app(
            separator,
            workdir,
            token,
            allowed_hosts_for(host, port),
            max_upload_bytes,
            label,
            local_address=everywhere,
        )
        url = page_url(shown_host(host), port, token)
        cap = connection_cap(raise_open_file_limit(), open_descriptors())
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=3,
            http=GuardedProtocol.configured(cap),
            ws="none",
            backlog=ACCEPT_BATCH,
        )
        server = uvicorn.Server(config)
        with quiet_logs():
            print(f"cunet ui: open {url}", flush=True)
            if everywhere:
                print(
                    f"cunet ui: listening on every network ({host}): anyone on the network who has "
                    "this address can use it",
                    flush=True,
                )
            print("(Ctrl-C stops the server and deletes the session's files)", flush=True)
            if open_browser and _has_display():
                # this computer's browser: loopback works whatever the network does
                local = page_url("::1" if host == "::" else "127.0.0.1", port, token)
                try:
                    opener = write_opener(workdir, local if everywhere else url)
                except OSError:  # e.g. a full disk: the printed address is enough
                    pass
                else:
                    threading.Thread(
                        target=_open, args=(server, opener.as_uri()), daemon=True
                    ).start()
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
    """Open `url` (the opener file's) once the server answers (quietly nothing where no browser is
    available)."""
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    try:
        webbrowser.open(url)
    except Exception:  # noqa: BLE001 - no browser is fine: the address was printed
        pass

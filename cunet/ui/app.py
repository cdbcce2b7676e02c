"""The web app of `cunet ui`: a Starlette application serving the page, the song API and the downloads.

API (every request carries the token, `cunet.ui.security`; every error is JSON `{"error": one line}`, also
an unexpected one, `cunet.ui.failures`: 500, and 507 when the disk is full):
- `GET /`: the page; `GET /static/...`: its script and style (served from the package).
- `GET /api/config`: the model's instruments, the upload limit and the output formats.
- `POST /api/songs?name=NAME&instruments=a,b&residual=1[&id=ID]`: the request body is the audio file, streamed
  to disk under the size limit (413 beyond), its start decoded before it is queued (400 with a message if it is
  not audio), separated while the rest arrives where its format allows (`intake`). 201 with the song
  (`Song.to_json`) once the whole body is in; 409 if the page's own id is in use.
- `GET /api/songs`: all songs with state, progress and queue position; `GET /api/songs/{id}`: one.
- `GET /api/songs/{id}/live[?from=SAMPLE&format=s16|f32]`: the stems as they are separated, PCM frames in one
  chunked response (`live`); it waits for a song whose upload has not made it yet.
- `DELETE /api/songs/{id}`: stop and forget a song, deleting its files.
- `GET /api/songs/{id}/stems/{stem}.{wav|flac|mp3}[?download=1]`: a stem; `GET /api/songs/{id}/zip?format=F`.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import CunetError, UserError, one_line
from .failures import LOG, ErrorMiddleware, NoSpace, classify
from .intake import Arrivals, Taken, take_in
from .jobs import Jobs, Song
from .live import FRAME, PCM_FORMATS
from .results import FORMATS, Downloads, download_name
from .security import TokenHostMiddleware
from .uploads import TooLarge

__all__ = ["DEFAULT_MAX_UPLOAD", "STATIC", "create_app"]

STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD = 1 << 30  # bytes: an hour of 16-bit stereo wav is 635 MB


def create_app(
    separator: Any,
    workdir: str | Path,
    token: str,
    allowed_hosts: Iterable[str],
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    model_label: str = "",
    local_address: bool = False,
) -> Starlette:
    """The app over a loaded `cunet.Separator`. workdir: an existing folder the songs' files go in (one
    folder per song, deleted on removal and when the app shuts down). allowed_hosts: the Host header
    values accepted (`security.allowed_hosts_for`); local_address: also the address a request came in on
    (listening on every network). max_upload_bytes: the largest upload, in bytes (at least 1).
    model_label: shown on the page."""
    if max_upload_bytes < 1:
        raise ValueError(f"max_upload_bytes must be at least 1, got {max_upload_bytes}")
    workdir = Path(workdir)
    jobs = Jobs(separator)
    arrivals = Arrivals()
    downloads = Downloads()
    page = (
        (STATIC / "index.html").read_text(encoding="utf-8").replace("__TOKEN__", html.escape(token))
    )

    def error(message: str, status: int, request: Request | None = None) -> JSONResponse:
        """The JSON answer; the session's folder is left out of messages, and 5xx are logged (one line)."""
        message = one_line(message.replace(str(workdir), ""))
        if status >= 500 and request is not None:
            LOG.error("cunet ui: %s %s: %d %s", request.method, request.url.path, status, message)
        return JSONResponse({"error": message}, status, headers={"cache-control": "no-store"})

    def song_or_404(request: Request) -> Song:
        song = jobs.get(request.path_params["song_id"])
        if song is None:
            raise _HTTPError("no such song (it was removed, or the server restarted)", 404)
        return song

    def done_or_409(song: Song) -> Song:
        if song.state != "done":
            raise _HTTPError(f"'{song.name}' is not separated yet ({song.state})", 409)
        return song

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers={"cache-control": "no-store"})

    async def config(request: Request) -> Response:
        return JSONResponse(
            {
                "instruments": list(separator.instruments),
                "formats": list(FORMATS),
                "max_upload_bytes": max_upload_bytes,
                "model": model_label,
                "sample_rate": separator.sample_rate,
            }
        )

    async def list_songs(request: Request) -> Response:
        return JSONResponse(jobs.songs(), headers={"cache-control": "no-store"})

    async def get_song(request: Request) -> Response:
        return JSONResponse(
            jobs.song_json(song_or_404(request)), headers={"cache-control": "no-store"}
        )

    async def upload(request: Request) -> Response:
        song = await take_in(request, separator, jobs, arrivals, workdir, max_upload_bytes)
        return JSONResponse(jobs.song_json(song), 201)

    async def live(request: Request) -> Response:
        song_id = request.path_params["song_id"]
        song = await arrivals.wait(song_id, jobs) if len(song_id) == 16 else None
        if song is None or song.live is None:
            raise _HTTPError("no such song (it was removed, or its upload failed)", 404)
        if song.state == "failed":
            raise _HTTPError(f"'{song.name}' failed: {song.error}", 409)
        first = request.query_params.get("from", "0")
        if not first.isdigit() or int(first) >= max(song.n_samples, 1):
            raise _HTTPError(f"from must be a sample of the song (0 to {song.n_samples - 1})", 400)
        fmt = request.query_params.get("format", "s16")
        if fmt not in PCM_FORMATS:
            raise _HTTPError(f"format must be one of {', '.join(PCM_FORMATS)}", 400)
        info = {
            "id": song.id,
            "sample_rate": song.sample_rate,
            "channels": song.n_channels,
            "n_samples": song.n_samples,
            "keys": song.keys,
        }
        body = song.live.response_body(info, int(first) // FRAME, run_in_threadpool, fmt)
        return StreamingResponse(
            body,
            media_type="application/octet-stream",
            headers={"cache-control": "no-store", "x-content-type-options": "nosniff"},
        )

    async def remove(request: Request) -> Response:
        song_id = request.path_params["song_id"]
        if not await run_in_threadpool(jobs.remove, song_id):
            return error("no such song (it was removed already?)", 404)
        downloads.forget(song_id)
        return JSONResponse({"removed": song_id})

    async def stem(request: Request) -> Response:
        song = done_or_409(song_or_404(request))
        key, dot, fmt = request.path_params["file"].rpartition(".")
        if not dot:
            return error("give the stem with a format, e.g. vocals.wav", 404)
        path = await _guarded(downloads.stem, song, key, fmt)
        attach = request.query_params.get("download") == "1"
        return FileResponse(
            path,
            media_type=_MEDIA[fmt],
            filename=download_name(song, key, fmt),
            content_disposition_type="attachment" if attach else "inline",
            headers={"cache-control": "no-store"},
        )

    async def zipped(request: Request) -> Response:
        song = done_or_409(song_or_404(request))
        fmt = request.query_params.get("format", "wav")
        path = await _guarded(downloads.zip, song, fmt)
        return FileResponse(
            path,
            media_type="application/zip",
            filename=download_name(song, None, fmt),
            headers={"cache-control": "no-store"},
        )

    async def _guarded(func: Any, song: Song, *args: Any) -> Path:
        """func(song, *args) in a thread; a song removed meanwhile is a 404, not an error; a file that cannot
        be made is the server's failure (500, 507 for a full disk), not the request's."""
        try:
            return await run_in_threadpool(func, song, *args)
        except (CunetError, OSError) as exc:
            if jobs.get(song.id) is None:
                raise _HTTPError("no such song (it was removed)", 404) from None
            if isinstance(exc, UserError):
                raise
            needed = sum(_size(p) for p in song.stems.values())  # a zip of wavs is the largest
            status, message = classify(exc, song.folder, needed)
            detail = status == 500 and isinstance(exc, CunetError)  # cunet's message says more
            raise _HTTPError(str(exc) if detail else message, status) from exc

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _HTTPError)
        return error(exc.message, exc.status, request)

    async def on_cunet_error(request: Request, exc: Exception) -> Response:
        statuses: dict[type, int] = {TooLarge: 413, NoSpace: 507, Taken: 409}
        status = statuses.get(type(exc), 400)
        return error(str(exc), status, request)

    async def on_starlette_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error(exc.detail if exc.status_code != 404 else "not found", exc.status_code)

    async def on_disconnect(request: Request, exc: Exception) -> Response:
        return error("the upload was interrupted", 400)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        jobs.start()
        try:
            yield
        finally:
            await run_in_threadpool(jobs.close)

    routes = [
        Route("/", index),
        Route("/api/config", config),
        Route("/api/songs", list_songs, methods=["GET"]),
        Route("/api/songs", upload, methods=["POST"]),
        Route("/api/songs/{song_id}", get_song, methods=["GET"]),
        Route("/api/songs/{song_id}", remove, methods=["DELETE"]),
        Route("/api/songs/{song_id}/live", live),
        Route("/api/songs/{song_id}/stems/{file}", stem),
        Route("/api/songs/{song_id}/zip", zipped),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            _HTTPError: on_http_error,
            CunetError: on_cunet_error,
            ClientDisconnect: on_disconnect,
            HTTPException: on_starlette_error,
        },
    )
    app.add_middleware(
        TokenHostMiddleware,
        token=token,
        allowed_hosts=allowed_hosts,
        local_address=local_address,
    )
    app.add_middleware(ErrorMiddleware, folder=workdir)  # added last: the outermost
    app.state.jobs = jobs
    app.state.workdir = workdir
    return app


_MEDIA = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg"}


def _size(path: Path) -> int:
    """The file's size in bytes; 0 if it is gone."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


class _HTTPError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message, self.status = message, status

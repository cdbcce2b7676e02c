"""The web app of `cunet ui`: a Starlette application serving the page, the song API and the downloads.

API (every request carries the token, `cunet.ui.security`; errors are JSON `{"error": one line}`):
- `GET /`: the page; `GET /static/...`: its script and style (served from the package).
- `GET /api/config`: the model's instruments, the upload limit and the output formats.
- `POST /api/songs?name=NAME&instruments=a,b&residual=1`: the request body is the audio file, streamed to
  disk under the size limit (413 beyond), decoded before it is queued (400 with a message if it is not
  audio). 201 with the song (`Song.to_json`).
- `GET /api/songs`: all songs with state, progress and queue position; `GET /api/songs/{id}`: one.
- `DELETE /api/songs/{id}`: stop and forget a song, deleting its files.
- `GET /api/songs/{id}/stems/{stem}.{wav|flac|mp3}[?download=1]`: a stem; `GET /api/songs/{id}/zip?format=F`.
"""

from __future__ import annotations

import contextlib
import html
import secrets
import shutil
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import CunetError, UserError, one_line
from .jobs import Jobs, Song
from .results import FORMATS, Downloads, download_name
from .security import TokenHostMiddleware
from .uploads import TooLarge, check_audio, display_name, input_path, receive

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
) -> Starlette:
    """The app over a loaded `cunet.Separator`. workdir: an existing folder the songs' files go in (one
    folder per song, deleted on removal and when the app shuts down). allowed_hosts: the Host header
    values accepted (`security.allowed_hosts_for`). model_label: shown on the page."""
    workdir = Path(workdir)
    jobs = Jobs(separator)
    downloads = Downloads()
    page = (
        (STATIC / "index.html").read_text(encoding="utf-8").replace("__TOKEN__", html.escape(token))
    )

    def error(message: str, status: int) -> JSONResponse:
        return JSONResponse(
            {"error": one_line(message)}, status, headers={"cache-control": "no-store"}
        )

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
        params = request.query_params
        name = display_name(params.get("name"))
        wanted = [t.strip() for t in params.get("instruments", "").split(",") if t.strip()]
        instruments = tuple(separator.check_instruments(wanted or None))
        residual = params.get("residual", "0").lower() in ("1", "true", "yes", "on")
        try:
            declared = (
                int(request.headers["content-length"])
                if "content-length" in request.headers
                else None
            )
        except ValueError:
            raise UserError("invalid Content-Length") from None
        song_id = secrets.token_hex(8)
        folder = workdir / song_id
        folder.mkdir()
        path = input_path(folder, name)
        try:
            await receive(request.stream(), path, max_upload_bytes, declared)
            info = await run_in_threadpool(check_audio, path, name)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        song = Song(
            id=song_id,
            name=name,
            folder=folder,
            input=path,
            instruments=instruments,
            residual=residual,
            duration=info.n_samples / info.sample_rate,
            sample_rate=info.sample_rate,
            n_channels=info.n_channels,
            n_chunks=separator.plan(info.n_samples, info.sample_rate).n_chunks,
        )
        jobs.add(song)
        return JSONResponse(jobs.song_json(song), 201)

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
        """func(song, *args) in a thread; a song removed meanwhile is a 404, not an error."""
        try:
            return await run_in_threadpool(func, song, *args)
        except (CunetError, OSError):
            if jobs.get(song.id) is None:
                raise _HTTPError("no such song (it was removed)", 404) from None
            raise

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _HTTPError)
        return error(exc.message, exc.status)

    async def on_cunet_error(request: Request, exc: Exception) -> Response:
        return error(str(exc), 413 if isinstance(exc, TooLarge) else 400)

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
    app.add_middleware(TokenHostMiddleware, token=token, allowed_hosts=allowed_hosts)
    app.state.jobs = jobs
    app.state.workdir = workdir
    return app


_MEDIA = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg"}


class _HTTPError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message, self.status = message, status

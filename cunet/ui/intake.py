"""Taking a song in: its upload streamed to disk, its start decoded, the song queued while the rest arrives.

`POST /api/songs` (`take_in`): with a Content-Length (browsers always send one for a file), the song is checked
and queued as soon as its first bytes are decoded, when its format can be read while it arrives
(`growing.UploadReader`: wav, flac, aiff, ...): its separation then overlaps its upload. Other formats (mp3 and
whatever else ffmpeg decodes, ogg) and bodies without a length are received whole first, then checked, as
before. Either way a failed or refused upload leaves no song and no file, and the answer (201 with the song)
comes once the whole body is in.

The page may name the song itself (`id`: 16 hexadecimal digits) so that it can open the song's live stream
before the upload is answered: `Arrivals.wait` holds such a request until the upload made the song (or failed).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..errors import CunetError, UserError
from ..io.audio import AudioInfo
from .growing import NotStreamable, Upload, UploadReader
from .jobs import Jobs, Song
from .uploads import CHECKED_SAMPLES, check_audio, display_name, input_path, receive

__all__ = ["HEAD_BYTES", "Arrivals", "Taken", "take_in"]

HEAD_BYTES = 1 << 16  # bytes received before the upload's header is read (a wav's is 44)
_ID = re.compile(r"[0-9a-f]{16}")
_PATIENCE = (
    5.0  # seconds a stream request waits for an upload it may have overtaken to announce its song
)


class Taken(UserError):
    """The song id the page chose is in use (HTTP 409)."""


class Arrivals:
    """The ids of uploads that have not made their song yet, each with an event set when they did (or
    failed). All on the event loop."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def open(self, song_id: str) -> bool:
        """Announce an upload; False if the id is already announced."""
        if song_id in self._events:
            return False
        self._events[song_id] = asyncio.Event()
        return True

    def close(self, song_id: str) -> None:
        event = self._events.pop(song_id, None)
        if event is not None:
            event.set()

    async def wait(self, song_id: str, jobs: Jobs, patience: float = _PATIENCE) -> Song | None:
        """The song `song_id`, once its upload made it; None if it fails, or if no upload of that id is
        announced within `patience` seconds (the request may have overtaken the upload on its way)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        while True:
            song = jobs.get(song_id)
            if song is not None:
                return song
            event = self._events.get(song_id)
            if event is not None:
                await event.wait()
                return jobs.get(song_id)
            if loop.time() > deadline:
                return None
            await asyncio.sleep(0.01)


async def take_in(
    request: Request, separator: Any, jobs: Jobs, arrivals: Arrivals, workdir: Path, limit: int
) -> Song:
    """The song of an upload request (query: name, instruments, residual, id), queued in `jobs`; its files
    under `workdir/<id>/`. limit: the largest upload in bytes. Raises for a bad request (UserError, TooLarge,
    Taken, AudioError), a full disk (NoSpace) or a dropped connection; nothing of the song is left then."""
    params = request.query_params
    name = display_name(params.get("name"))
    wanted = [t.strip() for t in params.get("instruments", "").split(",") if t.strip()]
    instruments = tuple(separator.check_instruments(wanted or None))
    residual = params.get("residual", "0").lower() in ("1", "true", "yes", "on")
    try:
        declared = (
            int(request.headers["content-length"]) if "content-length" in request.headers else None
        )
    except ValueError:
        raise UserError("invalid Content-Length") from None
    song_id = params.get("id") or secrets.token_hex(8)
    if not _ID.fullmatch(song_id):
        raise UserError("a song id is 16 hexadecimal digits (0-9, a-f)")
    if jobs.get(song_id) is not None or not arrivals.open(song_id):
        raise Taken(f"song id {song_id} is in use")
    try:
        folder = workdir / song_id
        try:
            folder.mkdir()
        except FileExistsError:
            raise Taken(f"song id {song_id} is in use") from None
        path = input_path(folder, name)
    except BaseException:
        arrivals.close(song_id)
        raise

    def make(info: AudioInfo, upload: Upload | None) -> Song:
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
            n_samples=info.n_samples,
            upload=upload,
        )
        jobs.add(song)
        arrivals.close(song_id)
        return song

    try:
        if declared is None or not 0 < declared <= limit:
            await receive(request.stream(), path, limit, declared)
            return make(await run_in_threadpool(check_audio, path, name), None)
        return await _overlapped(request, path, name, declared, limit, jobs, make)
    except BaseException:
        if jobs.get(song_id) is None:  # else `Jobs.remove` deleted it, or the song stays
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        arrivals.close(song_id)


async def _overlapped(
    request: Request, path: Path, name: str, size: int, limit: int, jobs: Jobs, make: Any
) -> Song:
    """Receive the body in a task; queue the song once its head decodes (or, for other formats, once all
    of it is in and checked); return when the whole body is in."""
    upload = Upload(path, size)
    head = asyncio.Event()

    def grew(received: int) -> None:
        if upload.error is not None:  # the song was removed meanwhile
            raise UserError("the song was removed while it was uploading")
        upload.grew(received)
        if received >= min(size, HEAD_BYTES):
            head.set()

    async def body() -> None:
        try:
            await receive(request.stream(), path, limit, size, on_data=grew)
        except BaseException as exc:
            upload.fail(exc)
            raise
        else:
            upload.complete()
        finally:
            head.set()

    task = asyncio.ensure_future(body())
    try:
        await head.wait()
        info = None if upload.error else await run_in_threadpool(_probe, upload)
        if info is None:  # read once complete, as before
            await task
            song = make(await run_in_threadpool(check_audio, path, name), None)
        else:
            song = make(info, upload)
    except BaseException:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise
    try:
        await task
    except BaseException:
        await run_in_threadpool(jobs.remove, song.id)
        raise
    return song


def _probe(upload: Upload) -> AudioInfo | None:
    """The upload's info once its header and first samples decode while it arrives; None if they do not
    (it is then checked whole, `uploads.check_audio`, which says why it is refused)."""
    try:
        with UploadReader(upload) as reader:
            next(reader.blocks(CHECKED_SAMPLES), None)
            return reader.info
    except (NotStreamable, CunetError, OSError):  # OSError: the upload failed and its file is gone
        return None

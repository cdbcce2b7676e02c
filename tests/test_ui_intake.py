"""Taking songs in (`cunet.ui.intake`): a wav is queued and separated while its upload arrives, its live stream
can be opened before the upload is answered, and an upload that fails leaves nothing behind."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import time
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

pytest.importorskip("starlette")

import soundfile as sf  # noqa: E402
from conftest import synth_mixture  # noqa: E402

from cunet.io.output import OutputSettings  # noqa: E402
from cunet.jobs import separate_file  # noqa: E402
from cunet.ui.app import create_app  # noqa: E402
from cunet.ui.intake import Arrivals  # noqa: E402

TOKEN = "intake-token"
SONG_ID = "00112233445566ff"


@pytest.fixture(scope="module")
def separator():
    from cunet.separator import Separator

    return Separator.from_pretrained()


def wav(seconds: float, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(
        buf,
        synth_mixture(seconds),
        44100,
        format=fmt,
        subtype="VORBIS" if fmt == "OGG" else "PCM_16",
    )
    return buf.getvalue()


async def request(
    app,
    method: str,
    path: str,
    query: str = "",
    parts: AsyncIterator[bytes] | None = None,
    length: int | None = None,
) -> tuple[int, bytes]:
    """One request straight through the ASGI app: (status, body). parts: the request body, piece by piece
    (ending without the last piece: the client hung up)."""
    headers = [(b"host", b"testserver"), (b"x-cunet-token", TOKEN.encode())]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": headers,
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000),
    }
    pieces = parts.__aiter__() if parts is not None else None
    finished = asyncio.Event()

    async def receive() -> dict:
        if pieces is None:
            await finished.wait()
            return {"type": "http.disconnect"}
        try:
            return {"type": "http.request", "body": await pieces.__anext__(), "more_body": True}
        except StopAsyncIteration:
            return {"type": "http.request", "body": b"", "more_body": False}
        except ConnectionError:
            return {"type": "http.disconnect"}

    status, body = [0], bytearray()

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))
            if not message.get("more_body"):
                finished.set()

    await app(scope, receive, send)
    return status[0], bytes(body)


async def pieces(
    data: bytes, gate: Callable[[int], asyncio.Future | None] | None = None, cut: int = 0
):
    """data in 64 KiB pieces; before each, gate(bytes sent) may return something to wait for; with `cut`
    the client hangs up after that many bytes."""
    for start in range(0, len(data), 1 << 16):
        if cut and start >= cut:
            raise ConnectionError
        waiting = gate(start) if gate else None
        if waiting is not None:
            await waiting
        yield data[start : start + (1 << 16)]
        await asyncio.sleep(0)


def frames_of(body: bytes) -> tuple[dict, np.ndarray]:
    n = struct.unpack("<I", body[:4])[0]
    header = json.loads(body[4 : 4 + n])
    keys, channels, pos, parts = len(header["keys"]), header["channels"], 4 + n, []
    while pos < len(body):
        _, count = struct.unpack("<II", body[pos : pos + 8])
        size = keys * channels * count * 2
        parts.append(
            np.frombuffer(body[pos + 8 : pos + 8 + size], "<i2").reshape(keys, channels, count)
        )
        pos += 8 + size
    return header, np.concatenate(parts, axis=2)


def test_a_wav_is_separated_while_it_uploads_and_streamed_to_a_listener_that_came_first(
    separator, tmp_path
):
    data = wav(25.0)  # 3 chunks of 10 s
    (tmp_path / "song.wav").write_bytes(data)
    workdir = tmp_path / "work"
    workdir.mkdir()
    app = create_app(separator, workdir, TOKEN, ["testserver"])
    jobs = app.state.jobs
    jobs.start()
    seen: dict = {}

    async def first_chunk_separated() -> None:
        while True:
            song = jobs.get(SONG_ID)
            if song is not None and song.done_chunks >= 1:
                seen.update(uploaded=song.upload.fraction, state=song.state, ready=song.live.ready)
                return
            await asyncio.sleep(0.01)

    def gate(sent: int):  # hold the second half of the file until the first chunk is separated
        return first_chunk_separated() if sent >= len(data) * 0.6 and not seen else None

    async def main():
        query = f"name=Song.wav&instruments=vocals,bass&residual=1&id={SONG_ID}"
        listener = asyncio.ensure_future(request(app, "GET", f"/api/songs/{SONG_ID}/live"))
        await asyncio.sleep(0.05)  # the page opens the stream before it sends the file
        posted = await request(app, "POST", "/api/songs", query, pieces(data, gate), len(data))
        return posted, await asyncio.wait_for(listener, 120)

    try:
        (status, body), (live_status, live_body) = asyncio.run(main())
        assert status == 201, body
        assert live_status == 200
        assert (
            seen["state"] == "separating" and seen["uploaded"] < 0.7
        )  # separating while uploading
        deadline = time.monotonic() + 60
        while jobs.get(SONG_ID).state != "done" and time.monotonic() < deadline:
            time.sleep(0.02)
        song = jobs.get(SONG_ID)
        assert song.state == "done" and song.upload.fraction == 1.0
        expected = separate_file(
            separator,
            tmp_path / "song.wav",
            tmp_path / "cli",
            ["vocals", "bass"],
            OutputSettings("wav"),
            residual=True,
            progress=False,
        )
        assert list(song.stems) == list(expected) == ["vocals", "bass", "no_vocals", "no_bass"]
        for key, path in expected.items():
            assert song.stems[key].read_bytes() == path.read_bytes()
        header, pcm = frames_of(live_body)
        assert header["keys"] == list(expected) and header["n_samples"] == 25 * 44100
        files = np.stack([sf.read(p, dtype="int16")[0] for p in expected.values()])
        np.testing.assert_array_equal(pcm, files.transpose(0, 2, 1))
    finally:
        jobs.close()


def test_an_upload_cut_short_leaves_no_song_and_no_file(separator, tmp_path):
    data = wav(12.0)
    app = create_app(separator, tmp_path, TOKEN, ["testserver"])
    jobs = app.state.jobs
    jobs.start()
    try:
        query = f"name=a.wav&id={SONG_ID}"
        status, body = asyncio.run(
            request(app, "POST", "/api/songs", query, pieces(data, cut=len(data) // 2), len(data))
        )
        assert status == 400 and json.loads(body) == {"error": "the upload was interrupted"}
        assert jobs.get(SONG_ID) is None and list(tmp_path.iterdir()) == []
    finally:
        jobs.close()


def test_a_format_read_whole_is_queued_once_complete(separator, tmp_path):
    data = wav(3.0, "OGG")
    app = create_app(separator, tmp_path, TOKEN, ["testserver"])
    jobs = app.state.jobs
    listed_early = []

    def gate(sent: int):
        if sent and sent + (1 << 16) >= len(data):
            listed_early.append(jobs.get(SONG_ID))
        return None

    query = f"name=a.ogg&id={SONG_ID}"
    status, body = asyncio.run(
        request(app, "POST", "/api/songs", query, pieces(data, gate), len(data))
    )
    assert status == 201 and json.loads(body)["uploaded"] == 1.0
    assert listed_early in ([], [None])
    jobs.close()


def test_the_page_may_choose_the_id_once_and_only_as_16_hexadecimal_digits(separator, tmp_path):
    data = wav(1.0)
    app = create_app(separator, tmp_path, TOKEN, ["testserver"])

    def post(song_id: str) -> tuple[int, dict]:
        status, body = asyncio.run(
            request(app, "POST", "/api/songs", f"name=a.wav&id={song_id}", pieces(data), len(data))
        )
        return status, json.loads(body)

    assert post(SONG_ID)[0] == 201
    assert post(SONG_ID) == (409, {"error": f"song id {SONG_ID} is in use"})
    for bad in ("../../etc", "ABCDEF0123456789", "0123"):
        assert post(bad) == (400, {"error": "a song id is 16 hexadecimal digits (0-9, a-f)"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [SONG_ID]
    app.state.jobs.close()


def test_arrivals_hold_a_request_until_the_upload_made_its_song_or_failed():
    class NoJobs:
        songs: dict = {}

        def get(self, song_id):
            return self.songs.get(song_id)

    async def main():
        arrivals, jobs = Arrivals(), NoJobs()
        assert await arrivals.wait("nobody", jobs, patience=0.05) is None  # never announced
        waiter = asyncio.ensure_future(arrivals.wait("a", jobs))
        await asyncio.sleep(0.02)
        assert arrivals.open("a") and not arrivals.open("a")  # announced after the request came
        await asyncio.sleep(0.05)
        assert not waiter.done()
        jobs.songs["a"] = "the song"
        arrivals.close("a")
        assert await waiter == "the song"
        failing = asyncio.ensure_future(arrivals.wait("b", jobs))
        arrivals.open("b")
        await asyncio.sleep(0.02)
        arrivals.close("b")  # the upload failed: no song
        assert await failing is None

    asyncio.run(main())

"""The web app's HTTP API through Starlette's test client, with the shipped model (LiteRT)."""

from __future__ import annotations

import errno
import io
import json
import struct
import time
import zipfile
from urllib.parse import unquote

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

import soundfile as sf  # noqa: E402
from conftest import synth_mixture  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from cunet.errors import AudioError  # noqa: E402
from cunet.io.audio import ffmpeg_available  # noqa: E402
from cunet.ui.app import create_app  # noqa: E402

TOKEN = "test-token-123"
HOST = "testserver"


@pytest.fixture(scope="module")
def separator():
    from cunet.separator import Separator

    return Separator.from_pretrained()


@pytest.fixture
def workdir(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def make_client(separator, workdir, **kwargs) -> TestClient:
    app = create_app(separator, workdir, TOKEN, [HOST], **kwargs)
    return TestClient(app, headers={"X-Cunet-Token": TOKEN})


def wav_bytes(
    seconds: float = 2.0, rate: int = 44100, channels: int = 2, fmt: str = "WAV"
) -> bytes:
    buf = io.BytesIO()
    sf.write(
        buf,
        synth_mixture(seconds, rate, channels)
        if channels <= 2
        else np.zeros((int(seconds * rate), channels), np.float32),
        rate,
        format=fmt,
        subtype="PCM_16",
    )
    return buf.getvalue()


def upload(client, data, name="song.wav", instruments="vocals,drums", residual=False, **kwargs):
    params = {"name": name, "instruments": instruments, "residual": "1" if residual else "0"}
    return client.post("/api/songs", params=params, content=data, **kwargs)


def wait(client, song_id, states=("done", "failed"), timeout=120.0):
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        song = client.get(f"/api/songs/{song_id}").json()
        seen.append(song)
        if song["state"] in states:
            return song, seen
        time.sleep(0.05)
    raise AssertionError(f"song still {seen[-1]['state']} after {timeout} s")


def song_folders(workdir):
    return sorted(p.name for p in workdir.iterdir())


def test_upload_progress_results_and_downloads(separator, workdir):
    data = wav_bytes(6.0)
    with make_client(separator, workdir) as client:
        r = upload(client, data, name="My Song.wav", residual=True)
        assert r.status_code == 201, r.text
        song = r.json()
        assert song["name"] == "My Song.wav" and song["state"] in ("queued", "separating")
        assert song["instruments"] == ["vocals", "drums"] and song["residual"] is True
        assert abs(song["duration"] - 6.0) < 1e-3
        done, seen = wait(client, song["id"])
        assert done["state"] == "done", done
        progress = [s["progress"] for s in seen]
        assert progress == sorted(progress) and progress[-1] == 1.0
        assert done["stems"] == ["vocals", "drums", "no_vocals", "no_drums"]
        assert [s["id"] for s in client.get("/api/songs").json()] == [song["id"]]

        mixture, rate = sf.read(io.BytesIO(data), dtype="float32")
        stems = {}
        for key in done["stems"]:
            r = client.get(f"/api/songs/{song['id']}/stems/{key}.wav")
            assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
            assert r.headers["content-disposition"].startswith("inline")
            stems[key], stem_rate = sf.read(io.BytesIO(r.content), dtype="float32")
            assert stem_rate == rate and stems[key].shape == mixture.shape
        # the residual is the mixture minus the estimate (16-bit files: within a few quantisation steps)
        np.testing.assert_allclose(stems["no_vocals"], mixture - stems["vocals"], atol=4 / 32768)

        r = client.get(f"/api/songs/{song['id']}/stems/vocals.flac", params={"download": "1"})
        assert r.status_code == 200 and r.headers["content-type"] == "audio/flac"
        assert r.headers["content-disposition"].startswith("attachment")
        assert "My Song - vocals.flac" in unquote(r.headers["content-disposition"])
        flac, _ = sf.read(io.BytesIO(r.content), dtype="float32")
        np.testing.assert_array_equal(flac, stems["vocals"])  # 16-bit wav -> 16-bit flac: lossless

        r = client.get(f"/api/songs/{song['id']}/zip", params={"format": "flac"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(r.content)) as z:
            assert sorted(z.namelist()) == sorted(f"My Song/{k}.flac" for k in done["stems"])

        if ffmpeg_available():
            r = client.get(f"/api/songs/{song['id']}/stems/drums.mp3")
            assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
            assert r.content[:3] == b"ID3" or r.content[0] == 0xFF

        for bad in ("vocals.ogg", "guitar.wav", "..%2Fvocals.wav", "vocals"):
            r = client.get(f"/api/songs/{song['id']}/stems/{bad}")
            assert r.status_code in (400, 404) and "error" in r.json(), bad
    assert song_folders(workdir) == []  # shutting down deletes every song's files


def parse_live(body: bytes) -> tuple[dict, np.ndarray]:
    """(header, int16 [stems, channels, samples]) of a `/live` response."""
    n = struct.unpack("<I", body[:4])[0]
    header = json.loads(body[4 : 4 + n])
    keys, channels, pos, parts, starts = len(header["keys"]), header["channels"], 4 + n, [], []
    while pos < len(body):
        start, count = struct.unpack("<II", body[pos : pos + 8])
        size = keys * channels * count * 2
        starts.append(start)
        parts.append(
            np.frombuffer(body[pos + 8 : pos + 8 + size], "<i2").reshape(keys, channels, count)
        )
        pos += 8 + size
    header["starts"] = starts
    return header, np.concatenate(parts, axis=2)


def test_the_live_stream_holds_the_stems_the_downloads_give(separator, workdir):
    with make_client(separator, workdir) as client:
        song = upload(client, wav_bytes(3.0, channels=1), name="m.wav", residual=True).json()
        with client.stream(
            "GET", f"/api/songs/{song['id']}/live"
        ) as r:  # opened while it separates
            assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
            assert r.headers["cache-control"] == "no-store"
            body = b"".join(r.iter_bytes())
        header, pcm = parse_live(body)
        assert {k: header[k] for k in ("id", "sample_rate", "channels", "n_samples", "keys")} == {
            "id": song["id"],
            "sample_rate": 44100,
            "channels": 1,
            "n_samples": 3 * 44100,
            "keys": ["vocals", "drums", "no_vocals", "no_drums"],
        }
        done, _ = wait(client, song["id"])
        assert done["state"] == "done" and done["keys"] == header["keys"]
        for i, key in enumerate(header["keys"]):
            stem = client.get(f"/api/songs/{song['id']}/stems/{key}.wav").content
            np.testing.assert_array_equal(
                pcm[i], sf.read(io.BytesIO(stem), dtype="int16", always_2d=True)[0].T
            )
        # once separated, from the stem files; `from` starts at the frame holding that sample
        again = client.get(f"/api/songs/{song['id']}/live").content
        assert again == body
        header, _ = parse_live(
            client.get(f"/api/songs/{song['id']}/live", params={"from": 70000}).content
        )
        assert header["starts"] == [65536, 131072]
        for bad in ("-1", "x", str(3 * 44100)):
            r = client.get(f"/api/songs/{song['id']}/live", params={"from": bad})
            assert r.status_code == 400 and "from must be a sample" in r.json()["error"]
        # as floats: x / 32768 of the same samples
        floats = client.get(f"/api/songs/{song['id']}/live", params={"format": "f32"}).content
        n = struct.unpack("<I", floats[:4])[0]
        assert json.loads(floats[4 : 4 + n])["format"] == "f32"
        _, count = struct.unpack("<II", floats[4 + n : 12 + n])
        first = np.frombuffer(floats[12 + n : 12 + n + 4 * count * 4], "<f4").reshape(4, 1, count)
        np.testing.assert_array_equal(first, pcm[:, :, :count] / np.float32(32768))
        r = client.get(f"/api/songs/{song['id']}/live", params={"format": "wav"})
        assert r.status_code == 400 and r.json() == {"error": "format must be one of s16, f32"}
        r = client.get(
            "/api/songs/ffffffffffffffff/live"
        )  # never announced: answered after a short wait
        assert r.status_code == 404 and r.json()["error"].startswith("no such song")
        assert client.get("/api/songs/nope/live").status_code == 404


def test_queue_separates_one_song_at_a_time(separator, workdir):
    with make_client(separator, workdir) as client:
        ids = [
            upload(client, wav_bytes(4.0), name=f"s{i}.wav", instruments="bass").json()["id"]
            for i in range(3)
        ]
        most_running = 0
        positions_seen = set()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            songs = client.get("/api/songs").json()
            assert [s["id"] for s in songs] == ids
            most_running = max(most_running, sum(s["state"] == "separating" for s in songs))
            positions_seen |= {s["queue_position"] for s in songs if s["state"] == "queued"}
            if all(s["state"] == "done" for s in songs):
                break
            time.sleep(0.02)
        assert all(s["state"] == "done" and s["stems"] == ["bass"] for s in songs)
        assert most_running == 1
        assert positions_seen and positions_seen <= {1, 2}


@pytest.mark.parametrize(
    "headers, params, host, reason",
    [
        ({}, {}, HOST, "missing access token"),
        ({"X-Cunet-Token": "wrong"}, {}, HOST, "wrong access token"),
        ({}, {"token": "wrong"}, HOST, "wrong access token"),
        ({"X-Cunet-Token": TOKEN}, {"token": "wrong"}, HOST, "wrong access token"),
        (
            {"X-Cunet-Token": TOKEN},
            {},
            "evil.example:8765",
            "does not answer to host 'evil.example:8765'",
        ),
    ],
)
def test_requests_without_the_token_or_from_another_host_are_refused(
    separator, workdir, headers, params, host, reason
):
    app = create_app(separator, workdir, TOKEN, [HOST])
    with TestClient(app) as client:
        for method, path, body in (
            ("GET", "/", None),
            ("GET", "/api/songs", None),
            ("GET", "/static/app.js", None),
            ("POST", "/api/songs", wav_bytes(0.5)),
            ("GET", "/api/songs/0123456789abcdef/live", None),
            ("GET", "/api/songs/0123456789abcdef/live?from=0", None),
        ):
            r = client.request(
                method, path, params=params, content=body, headers={**headers, "host": host}
            )
            assert r.status_code == 403, (method, path)
            assert reason in r.json()["error"]
        assert song_folders(workdir) == []
        # the same requests with the token and this server's name are answered
        assert client.get("/", params={"token": TOKEN}).status_code == 200
        assert client.get("/api/songs", headers={"X-Cunet-Token": TOKEN}).json() == []


def test_page_and_static_files_carry_the_token(separator, workdir):
    with make_client(separator, workdir) as client:
        page = client.get("/").text
        assert f'content="{TOKEN}"' in page and f"/static/app.js?token={TOKEN}" in page
        assert (
            "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
        )  # nothing external
        assert client.get("/static/app.js").status_code == 200
        assert client.get("/static/style.css").status_code == 200
        config = client.get("/api/config").json()
        assert config["instruments"] == list(separator.instruments) and config["formats"] == [
            "wav",
            "flac",
            "mp3",
        ]


def test_oversized_uploads_are_refused_and_leave_nothing(separator, workdir):
    data = wav_bytes(1.0)
    with make_client(separator, workdir, max_upload_bytes=len(data) - 1) as client:
        r = upload(client, data)  # Content-Length says it at once
        assert r.status_code == 413 and "more than the limit" in r.json()["error"]

        def chunks():  # no Content-Length: caught while streaming
            for i in range(0, len(data), 4096):
                yield data[i : i + 4096]

        r = upload(client, chunks())
        assert r.status_code == 413 and "more than the limit" in r.json()["error"]
        assert song_folders(workdir) == [] and client.get("/api/songs").json() == []
        assert upload(client, wav_bytes(0.5)).status_code == 201  # a smaller file still passes


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("notes.txt", b"these are not sounds\n" * 100, "notes.txt: not audio cunet can read"),
        (
            "fake.wav",
            b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(500),
            "fake.wav: not audio cunet can read",
        ),
        ("empty.wav", b"", "the file is empty"),
        ("surround.wav", None, "channels are not supported"),
    ],
)
def test_non_audio_uploads_get_a_clear_message_and_leave_nothing(
    separator, workdir, tmp_path, name, data, message
):
    data = wav_bytes(0.5, channels=6) if data is None else data
    with make_client(separator, workdir) as client:
        r = upload(client, data, name=name)
        assert r.status_code == 400
        error = r.json()["error"]
        assert message in error and str(tmp_path) not in error and "\n" not in error
        assert song_folders(workdir) == [] and client.get("/api/songs").json() == []


def test_bad_options_are_refused(separator, workdir):
    with make_client(separator, workdir) as client:
        r = upload(client, wav_bytes(0.5), instruments="vocals,kazoo")
        assert r.status_code == 400 and "unknown instrument 'kazoo'" in r.json()["error"]
        r = client.post(
            "/api/songs",
            params={"name": "x.wav"},
            content=wav_bytes(0.5),
            headers={"content-length": "many"},
        )
        assert r.status_code == 400
        assert song_folders(workdir) == []
        assert client.get("/api/songs/0123456789abcdef").status_code == 404
        assert client.delete("/api/songs/../../etc").status_code in (404, 405)


def test_the_browsers_file_name_is_never_a_path(separator, workdir, tmp_path):
    with make_client(separator, workdir) as client:
        r = upload(client, wav_bytes(0.5), name="../../../escape/..\\evil.wav")
        assert r.status_code == 201
        song = r.json()
        assert song["name"] == "evil.wav"
        folder = workdir / song["id"]
        assert folder.is_dir() and song_folders(workdir) == [song["id"]]
        done, _ = wait(client, song["id"])
        assert sorted(p.name for p in (folder / "stems").iterdir()) == ["drums.wav", "vocals.wav"]
        assert not (tmp_path / "escape").exists()
        assert {p.name for p in tmp_path.iterdir()} == {"work"}
        r = client.get(f"/api/songs/{song['id']}/stems/vocals.wav", params={"download": "1"})
        assert "evil - vocals.wav" in unquote(r.headers["content-disposition"])


def test_removal_deletes_the_songs_files(separator, workdir):
    with make_client(separator, workdir) as client:
        song = upload(client, wav_bytes(1.0), residual=True).json()
        wait(client, song["id"])
        assert (
            client.get(f"/api/songs/{song['id']}/zip", params={"format": "flac"}).status_code == 200
        )
        assert (workdir / song["id"] / "downloads").is_dir()
        r = client.delete(f"/api/songs/{song['id']}")
        assert r.status_code == 200 and r.json() == {"removed": song["id"]}
        assert song_folders(workdir) == []
        assert client.get(f"/api/songs/{song['id']}").status_code == 404
        assert client.get(f"/api/songs/{song['id']}/stems/vocals.wav").status_code == 404
        assert client.delete(f"/api/songs/{song['id']}").status_code == 404
        assert client.get("/api/songs").json() == []


def test_removing_a_song_while_it_separates_stops_it_and_the_queue_goes_on(separator, workdir):
    with make_client(separator, workdir) as client:
        long = upload(client, wav_bytes(90.0), name="long.wav").json()
        queued = upload(client, wav_bytes(1.0), name="queued.wav").json()
        nxt = upload(client, wav_bytes(1.0), name="next.wav").json()
        wait(client, long["id"], states=("separating",))
        assert (
            client.delete(f"/api/songs/{queued['id']}").status_code == 200
        )  # waiting: removed at once
        assert (
            client.delete(f"/api/songs/{long['id']}").status_code == 200
        )  # running: stopped, then deleted
        assert song_folders(workdir) == [nxt["id"]]
        done, _ = wait(client, nxt["id"])
        assert done["state"] == "done"
        assert [s["id"] for s in client.get("/api/songs").json()] == [nxt["id"]]
        assert song_folders(workdir) == [nxt["id"]]
        assert not list((workdir / nxt["id"] / "stems").glob(".*"))  # no partial files left


@pytest.mark.skipif(not ffmpeg_available(), reason="mp3 needs ffmpeg")
def test_formats_ffmpeg_reads_are_accepted(separator, workdir, tmp_path):
    from cunet.io.writer import write_audio

    mp3 = write_audio(tmp_path / "x.mp3", synth_mixture(2.0), 44100, "mp3")
    with make_client(separator, workdir) as client:
        song = upload(client, mp3.read_bytes(), name="Track 01.MP3", instruments="vocals").json()
        assert song["state"] in ("queued", "separating") and song["sample_rate"] == 44100
        done, _ = wait(client, song["id"])
        assert done["state"] == "done" and done["stems"] == ["vocals"]
        stem, rate = sf.read(
            io.BytesIO(client.get(f"/api/songs/{song['id']}/stems/vocals.wav").content)
        )
        assert rate == 44100 and abs(stem.shape[0] - 2 * 44100) < 2000  # mp3 pads a little


@pytest.mark.parametrize(
    "failure, status, message",
    [
        (OSError(errno.ENOSPC, "No space left on device"), 507, "the server's disk is full"),
        (OSError(errno.EIO, "Input/output error"), 500, "cannot read or write the session's files"),
        (ZeroDivisionError("division by zero"), 500, "internal error (ZeroDivisionError)"),
        (AudioError("cannot write 'x.flac': System error."), 500, "cannot write 'x.flac'"),
    ],
)
def test_a_download_that_cannot_be_made_is_the_servers_failure_in_one_json_line(
    separator, workdir, monkeypatch, caplog, failure, status, message
):
    def convert(wav, target, fmt):
        raise failure

    import cunet.ui.results as results  # the module object: other tests re-import cunet.ui

    monkeypatch.setattr(results, "_convert", convert)
    with make_client(separator, workdir) as client:
        song = upload(client, wav_bytes(0.5), instruments="bass").json()
        wait(client, song["id"])
        for path in ("stems/bass.flac", "zip?format=mp3"):
            r = client.get(f"/api/songs/{song['id']}/{path}")
            assert r.status_code == status and r.headers["content-type"] == "application/json"
            assert message in r.json()["error"] and str(workdir) not in r.text
        assert client.get(f"/api/songs/{song['id']}/stems/bass.wav").status_code == 200
    logged = [r.getMessage() for r in caplog.records if r.name == "cunet.ui"]
    assert len(logged) == 2 and all("\n" not in line and message in line for line in logged)

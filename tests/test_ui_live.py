"""The stems on their way to the page (`cunet.ui.live`): frames read from the stem files while they are written
and after they are published, each as soon as it is separated; exactly the samples of the published files."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import threading

import numpy as np
import pytest
import soundfile as sf

from cunet.io.writer import AtomicAudioWriter
from cunet.ui.live import FRAME, LivePcm, WavFrames, data_offset

KEYS = ["vocals", "drums", "no_vocals"]


def stems(n_keys: int, n: int, seed: int = 0) -> np.ndarray:
    """float32 [n_keys, n, 2], a little beyond full scale here and there (clamped, as the files are)."""
    return np.random.default_rng(seed).uniform(-1.1, 1.1, (n_keys, n, 2)).astype(np.float32)


class Files:
    """The stems' 16-bit wav files written block by block, as `separation.separate_song` writes them."""

    def __init__(self, folder, keys, live: LivePcm) -> None:
        self.writers = {
            k: AtomicAudioWriter(
                folder / f"{k}.wav", 44100, 2, "wav", staging_dir=folder, bits="16"
            )
            for k in keys
        }
        self.live = live
        live.start({k: w.partial for k, w in self.writers.items()})

    def write(self, block: np.ndarray) -> None:
        for writer, stem in zip(self.writers.values(), block, strict=True):
            writer.write(stem)
        self.live.advance(block.shape[1])

    def publish(self) -> dict:
        for writer in self.writers.values():
            writer.finish()
        published = {k: w.commit(overwrite=False) for k, w in self.writers.items()}
        self.live.finish(published)
        return published


def parse(body: bytes) -> tuple[dict, list[tuple[int, np.ndarray]]]:
    """(header, [(start, samples [n_keys, channels, count])]) of a response body."""
    n = struct.unpack("<I", body[:4])[0]
    header = json.loads(body[4 : 4 + n])
    pos, frames = 4 + n, []
    keys, channels = len(header["keys"]), header["channels"]
    dtype, width = ("<f4", 4) if header["format"] == "f32" else ("<i2", 2)
    while pos < len(body):
        start, count = struct.unpack("<II", body[pos : pos + 8])
        size = keys * channels * count * width
        data = np.frombuffer(body[pos + 8 : pos + 8 + size], dtype).reshape(keys, channels, count)
        frames.append((start, data))
        pos += 8 + size
    return header, frames


async def collect(live: LivePcm, start: int = 0, fmt: str = "s16") -> bytes:
    async def threads(func, *args):
        return await asyncio.to_thread(func, *args)

    info = {"keys": KEYS, "channels": 2}
    return b"".join([part async for part in live.response_body(info, start, threads, fmt)])


def on_disk(published: dict, dtype: str = "int16") -> np.ndarray:
    """[n_keys, channels, n] of the published files."""
    return np.stack([sf.read(p, dtype=dtype)[0] for p in published.values()]).transpose(0, 2, 1)


def test_frames_are_read_from_the_files_as_they_are_written_then_from_the_published_ones(tmp_path):
    n = 2 * FRAME + 1234
    audio = stems(3, n)
    live = LivePcm(3, 2, n)
    assert live.n_frames == 3 and live.ready == 0 and live.state == "waiting"
    files = Files(tmp_path, KEYS, live)
    for start in range(0, 2 * FRAME + 10, 50_000):  # blocks of any size, as chunks come
        files.write(audio[:, start : min(start + 50_000, 2 * FRAME + 10)])
    assert live.ready == 2 and live.state == "running"  # the last frame is not complete yet
    source = WavFrames(list(live.files.values()), n)  # the partial files
    early = [source.read(k) for k in range(2)]
    files.write(audio[:, 2 * FRAME + 10 :])
    published = files.publish()
    assert live.state == "done" and live.ready == 3 and live.files == published
    expected = on_disk(published)
    np.testing.assert_array_equal(np.concatenate(early, axis=2), expected[:, :, : 2 * FRAME])
    np.testing.assert_array_equal(
        source.read(2), expected[:, :, 2 * FRAME :]
    )  # renamed, still open
    source.close()
    body = asyncio.run(collect(live))
    header, frames = parse(body)
    assert header == {"keys": KEYS, "channels": 2, "frame": FRAME, "format": "s16"}
    assert [(s, f.shape[2]) for s, f in frames] == [(0, FRAME), (FRAME, FRAME), (2 * FRAME, 1234)]
    np.testing.assert_array_equal(np.concatenate([f for _, f in frames], axis=2), expected)
    assert parse(asyncio.run(collect(live, start=2)))[1][0][0] == 2 * FRAME
    # as floats: x / 32768 of those, what reading the stem files as floats gives
    header, frames = parse(asyncio.run(collect(live, fmt="f32")))
    assert header["format"] == "f32"
    floats = np.concatenate([f for _, f in frames], axis=2)
    np.testing.assert_array_equal(floats, on_disk(published, "float32"))


def test_readers_get_each_frame_as_it_is_written_and_stop_when_the_song_fails(tmp_path):
    n = 3 * FRAME
    audio = stems(3, n, seed=1)
    live = LivePcm(3, 2, n)
    seen: list[int] = []

    async def read() -> None:
        async def threads(func, *args):
            return await asyncio.to_thread(func, *args)

        async for part in live.response_body({"keys": KEYS, "channels": 2}, 0, threads):
            seen.append(len(part))

    async def main() -> None:
        reader = asyncio.ensure_future(read())
        await asyncio.sleep(0.05)
        assert len(seen) == 1  # the header; nothing separated yet: the reader waits
        files = await asyncio.to_thread(Files, tmp_path, KEYS, live)
        await asyncio.to_thread(files.write, audio[:, :FRAME])
        for _ in range(200):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(seen) == 2 and not reader.done()
        await asyncio.to_thread(live.fail)  # removed: the reader ends instead of waiting for ever
        await asyncio.wait_for(reader, 5)
        for writer in files.writers.values():
            writer.abort()

    asyncio.run(main())
    assert seen[1] == 8 + FRAME * 3 * 2 * 2


def test_a_reader_opening_while_the_files_are_published_reads_the_published_ones(tmp_path):
    n = FRAME + 10
    live = LivePcm(3, 2, n)
    files = Files(tmp_path, KEYS, live)
    files.write(stems(3, n, seed=2))
    partials = dict(live.files)
    for writer in files.writers.values():  # published (renamed), not yet told
        writer.finish()
        writer.commit(overwrite=False)
    assert not any(p.exists() for p in partials.values())

    async def main() -> bytes:
        reading = asyncio.ensure_future(collect(live))
        await asyncio.sleep(0.1)
        assert not reading.done()  # the partial files are gone: it waits to be told where they went
        live.finish({k: tmp_path / f"{k}.wav" for k in KEYS})
        return await asyncio.wait_for(reading, 5)

    _, frames = parse(asyncio.run(main()))
    assert sum(f.shape[2] for _, f in frames) == n


def test_finish_refuses_a_short_copy():
    live = LivePcm(1, 2, 100)
    live.advance(99)
    with pytest.raises(RuntimeError, match="99 of 100"):
        live.finish({})
    live.fail()
    live.advance(1)
    assert live.state == "failed"  # a removed song's last block does not revive it


def test_writing_and_reading_from_two_threads(tmp_path):
    n = 6 * FRAME + 7
    audio = stems(2, n, seed=3)
    live = LivePcm(2, 2, n)
    keys = ["a", "b"]
    published: dict = {}

    def separate() -> None:
        files = Files(tmp_path, keys, live)
        for start in range(0, n, 30_000):
            files.write(audio[:, start : start + 30_000])
        published.update(files.publish())

    async def read() -> bytes:
        async def threads(func, *args):
            return await asyncio.to_thread(func, *args)

        worker = threading.Thread(target=separate)
        worker.start()
        info = {"keys": keys, "channels": 2}
        body = b"".join([p async for p in live.response_body(info, 0, threads, "s16")])
        worker.join()
        return body

    _, frames = parse(asyncio.run(read()))
    np.testing.assert_array_equal(
        np.concatenate([f for _, f in frames], axis=2), on_disk(published)
    )


def test_the_samples_of_a_wav_are_found_after_its_other_chunks():
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((10, 2), np.float32), 44100, format="WAV", subtype="PCM_16")
    plain = buffer.getvalue()
    assert data_offset(plain) == (44, 2)
    extra = b"LIST" + struct.pack("<I", 5) + b"abcde\x00"  # an odd-sized chunk is padded
    with_list = plain[:36] + extra + plain[36:]
    assert data_offset(with_list) == (44 + len(extra), 2)
    for bad, reason in (
        (b"not a wav file at all", "not a wav file"),
        (_wav("FLOAT"), "not a 16-bit PCM wav"),
        (_wav("PCM_24"), "not a 16-bit PCM wav"),
        (plain[:36], "no samples"),
    ):
        with pytest.raises(OSError, match=reason):
            data_offset(bad)


def _wav(subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((10, 1), np.float32), 44100, format="WAV", subtype=subtype)
    return buffer.getvalue()

"""Audio through pipes: raw PCM codecs, WAV streams read without seeking (every subtype soundfile writes),
and the errors of broken or early-closed streams; raw output streams."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from cunet.commands import message as message_of
from cunet.errors import AudioError, UserError
from cunet.io.audio import Excerpt, ffmpeg_available
from cunet.io.pcm import (
    RawFormat,
    StreamReader,
    decode,
    encode,
    excerpt_blocks,
    spool,
    stdin_file,
)
from cunet.io.sink import PcmSink


def _wav_bytes(x: np.ndarray, rate: int, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 3000),
    n_channels=st.integers(1, 2),
    encoding=st.sampled_from(["f32le", "s16le", "s24le"]),
    seed=st.integers(0, 2**16),
)
def test_raw_round_trip(n: int, n_channels: int, encoding: str, seed: int) -> None:
    x = np.random.default_rng(seed).uniform(-1.2, 1.2, (n, n_channels)).astype(np.float32)
    y = decode(encode(x, encoding), encoding, n_channels)
    assert y.shape == x.shape and y.dtype == np.float32
    if encoding == "f32le":
        np.testing.assert_array_equal(y, x)
    else:
        step = 2.0 ** (-15 if encoding == "s16le" else -23)
        np.testing.assert_allclose(y, np.clip(x, -1, 1 - step), atol=step)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
@pytest.mark.parametrize("block", [1, 777, 100000])
def test_wav_stream_matches_soundfile(subtype: str, block: int) -> None:
    x = np.random.default_rng(1).uniform(-0.9, 0.9, (5001, 2)).astype(np.float32)
    data = _wav_bytes(x, 22050, subtype)
    reader = StreamReader(io.BytesIO(data))
    y = np.concatenate(list(reader.blocks(block)))
    expected, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    assert (reader.sample_rate, reader.n_channels) == (rate, 2)
    np.testing.assert_array_equal(y, expected)


@pytest.mark.skipif(not ffmpeg_available(), reason="ffmpeg is not installed")
def test_wav_from_ffmpeg_pipe_without_a_length() -> None:
    """ffmpeg writing WAV to a pipe cannot fill in the sizes: read until the stream ends."""
    x = np.random.default_rng(2).uniform(-0.5, 0.5, (3000, 2)).astype(np.float32)
    data = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "f32le",
            "-ar",
            "44100",
            "-ac",
            "2",
            "-i",
            "-",
            "-c:a",
            "pcm_f32le",
            "-f",
            "wav",
            "-",
        ],
        input=x.tobytes(),
        capture_output=True,
        check=True,
    ).stdout
    reader = StreamReader(io.BytesIO(data))
    np.testing.assert_array_equal(np.concatenate(list(reader.blocks(1000))), x)


@pytest.mark.parametrize(
    "data,raw,message",
    [
        (b"", None, "no data (the stream is empty)"),
        (b"", RawFormat("f32le", 44100, 2), "no data (the stream is empty)"),
        (b"RIFF\x00\x00", None, "ended inside a WAV header"),
        (b"ID3\x04" + bytes(100), None, "not a WAV stream"),
        (b"RIFX" + bytes(4) + b"WAVE", None, "big-endian"),
    ],
    ids=["empty", "empty_raw", "cut_header", "mp3", "rifx"],
)
def test_bad_streams_fail_when_opened(data: bytes, raw: RawFormat | None, message: str) -> None:
    with pytest.raises(AudioError, match="stdin: ") as err:
        StreamReader(io.BytesIO(data), raw)
    assert message in str(err.value)


def test_closed_early_and_broken_streams_fail_while_reading() -> None:
    x = np.zeros((4410, 2), np.float32)
    wav = _wav_bytes(x, 44100, "PCM_16")
    with pytest.raises(
        AudioError, match="ended after 2000 of the 4410 samples its WAV header announced"
    ):
        list(StreamReader(io.BytesIO(wav[: 44 + 2000 * 4])).blocks(512))
    with pytest.raises(
        AudioError, match="ended after 2000 of the 4410 samples"
    ):  # cut inside a frame too
        list(StreamReader(io.BytesIO(wav[: 44 + 2000 * 4 + 3])).blocks(512))
    raw = encode(x, "s16le")[:-1]
    with pytest.raises(AudioError, match=r"in the middle of a sample frame \(3 stray bytes"):
        list(StreamReader(io.BytesIO(raw), RawFormat("s16le", 44100, 2)).blocks(512))


def test_unsupported_wav_format_is_named() -> None:
    data = bytearray(_wav_bytes(np.zeros((10, 1), np.float32), 8000, "PCM_16"))
    data[20:22] = (6).to_bytes(2, "little")  # A-law
    with pytest.raises(AudioError, match="unsupported WAV sample format"):
        StreamReader(io.BytesIO(bytes(data)))


@pytest.mark.parametrize(
    "raw,message",
    [
        (RawFormat("f64le", 44100, 2), "unknown --raw-format"),
        (RawFormat("f32le", 0, 2), "--raw-rate"),
        (RawFormat("f32le", 44100, 6), "--raw-channels must be 1 or 2"),
    ],
)
def test_raw_formats_are_checked(raw: RawFormat, message: str) -> None:
    """The CLI's messages (the library names the fields: encoding, sample_rate, n_channels)."""
    with pytest.raises(UserError) as err:
        raw.validate()
    assert message in message_of(err.value) and "--" not in str(err.value)


def test_excerpt_of_a_stream() -> None:
    blocks = [np.full((100, 1), i, np.float32) for i in range(10)]  # 1000 samples, block i holds i
    y = np.concatenate(list(excerpt_blocks(blocks, Excerpt(0.25, 0.1), 1000)))
    assert y.shape == (100, 1) and y[0, 0] == 2 and y[-1, 0] == 3
    assert np.concatenate(list(excerpt_blocks(blocks, Excerpt(0.95), 1000))).shape == (50, 1)
    with pytest.raises(AudioError, match="past the end of the stream"):
        list(excerpt_blocks(blocks, Excerpt(2.0), 1000))


def test_spool_and_stdin_file(tmp_path: Path) -> None:
    x = np.random.default_rng(3).uniform(-1, 1, (7000, 2)).astype(np.float32)
    path = spool(
        StreamReader(io.BytesIO(encode(x, "f32le")), RawFormat("f32le", 32000, 2)),
        tmp_path / "s.wav",
    )
    y, rate = sf.read(path, dtype="float32")
    assert rate == 32000
    np.testing.assert_array_equal(y, x)
    with stdin_file(None, io.BytesIO(_wav_bytes(x, 48000, "FLOAT"))) as spooled:
        assert sf.info(spooled).samplerate == 48000 and sf.info(spooled).frames == 7000
    assert not spooled.exists()


def test_sink_interleaves_outputs_and_counts_clamped_samples(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    sink = PcmSink("f32le", clip=True, fd=write_fd)
    block = np.stack(
        [np.full((3, 2), 0.5), np.array([[2.0, -2.0], [0.1, 0.2], [0.3, 0.4]])]
    ).astype(np.float32)
    sink.write(block)  # [2 outputs, 3 samples, 2 channels]
    os.close(write_fd)
    y = np.frombuffer(os.read(read_fd, 1000), "<f4").reshape(3, 4)
    os.close(read_fd)
    np.testing.assert_allclose(y[0], [0.5, 0.5, 1.0, -1.0])
    assert sink.n_clipped == 2 and sink.n_written == 3


def test_sink_to_a_file_is_atomic_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.s16"
    sink = PcmSink("s16le", clip=False, path=target)
    sink.write(np.zeros((1, 10, 1), np.float32))
    assert not target.exists()
    sink.commit()
    assert target.read_bytes() == bytes(20)
    with pytest.raises(AudioError, match="exists; use overwrite=True"):
        PcmSink("f32le", clip=False, path=target)
    failed = PcmSink("f32le", clip=False, path=target, overwrite=True)
    failed.write(np.ones((1, 5, 1), np.float32))
    failed.abort()
    assert target.read_bytes() == bytes(20) and sorted(p.name for p in target.parent.iterdir()) == [
        "out.s16"
    ]


def test_sink_reports_a_closed_reader() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    sink = PcmSink("f32le", clip=False, fd=write_fd)
    try:
        with pytest.raises(AudioError, match="closed by its reader"):
            sink.write(np.zeros((1, 100, 2), np.float32))
    finally:
        os.close(write_fd)

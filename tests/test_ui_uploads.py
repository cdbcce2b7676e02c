"""Uploads (`cunet.ui.uploads`): safe names and paths, streaming under a limit, decoding before any work."""

from __future__ import annotations

import asyncio
import errno

import numpy as np
import pytest
import soundfile as sf

from cunet.errors import AudioError, UserError
from cunet.ui.failures import DISK_FULL, NoSpace
from cunet.ui.uploads import MAX_NAME, TooLarge, check_audio, display_name, input_path, receive


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("song.mp3", "song.mp3"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\Music\\track.flac", "track.flac"),
        ("a\x00b\nc\u202e.wav", "abc.wav"),
        ('we"ird<>|?*.wav', "weird.wav"),
        ("..", "song"),
        ("", "song"),
        (None, "song"),
        ("/", "song"),
        ("x" * 500 + ".wav", "x" * 200),
        ("\u00e9" * 250 + ".wav", "\u00e9" * 100),  # 200 bytes, not 200 characters (400 bytes)
        ("a" + "\U0001f3b5" * 100, "a" + "\U0001f3b5" * 49),  # cut between characters
    ],
)
def test_display_name_keeps_only_a_safe_last_component(raw, shown):
    assert display_name(raw) == shown
    assert len(display_name(raw).encode()) <= MAX_NAME


@pytest.mark.parametrize(
    "name, stored",
    [
        ("song.WAV", "input.wav"),
        ("a.flac", "input.flac"),
        ("x.stem.mp4", "input.stem.mp4"),
        ("y.mp3", "input.mp3"),
        ("notes.txt", "input"),
        ("noext", "input"),
        ("evil.wav.sh", "input"),
        ("song", "input"),
    ],
)
def test_input_path_is_input_plus_a_known_audio_extension(tmp_path, name, stored):
    assert input_path(tmp_path, display_name(name)) == tmp_path / stored


async def _chunks(data: bytes, size: int = 1000):
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_receive_streams_to_disk_under_the_limit(tmp_path):
    data = bytes(range(256)) * 40
    path = tmp_path / "input.wav"
    assert asyncio.run(receive(_chunks(data), path, limit=len(data), declared=len(data))) == len(
        data
    )
    assert path.read_bytes() == data


@pytest.mark.parametrize("declared", [None, 10_240, 5])
def test_receive_refuses_more_than_the_limit_and_leaves_no_file(tmp_path, declared):
    path = tmp_path / "input.wav"
    with pytest.raises(TooLarge, match="more than the limit of"):
        asyncio.run(receive(_chunks(bytes(10_240)), path, limit=10_000, declared=declared))
    assert not path.exists()
    with pytest.raises(TooLarge, match="the file is 20.0 MB, more than the limit of 10.0 MB"):
        asyncio.run(receive(_chunks(b""), path, limit=10_000_000, declared=20_000_000))


def test_receive_refuses_an_empty_body_and_cleans_up_after_a_dropped_connection(tmp_path):
    path = tmp_path / "input.wav"
    with pytest.raises(UserError, match="empty"):
        asyncio.run(receive(_chunks(b""), path, limit=100))
    assert not path.exists()

    async def dropped():
        yield b"abc"
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        asyncio.run(receive(dropped(), path, limit=100))
    assert not path.exists()


@pytest.mark.parametrize(
    "number, error, message",
    [
        (errno.ENOSPC, NoSpace, DISK_FULL),
        (errno.EDQUOT, NoSpace, DISK_FULL),
        (errno.EFBIG, TooLarge, "the file is larger than the server's file system allows"),
    ],
)
def test_a_full_disk_or_file_system_limit_leaves_no_file(
    tmp_path, monkeypatch, number, error, message
):
    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(number, "full")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    import cunet.ui.uploads as uploads  # the module object: other tests re-import cunet.ui

    monkeypatch.setattr(uploads, "open", lambda *a: Full(open(*a)), raising=False)
    path = tmp_path / "input.wav"
    with pytest.raises(error) as exc:
        asyncio.run(receive(_chunks(bytes(5000)), path, limit=100_000))
    assert str(exc.value).startswith(message) and not path.exists()


def test_check_audio_reads_the_info_and_names_the_song_not_the_path(tmp_path):
    path = tmp_path / "input.wav"
    sf.write(path, np.zeros((22050, 2), np.float32), 22050)
    info = check_audio(path, "My song.wav")
    assert (info.sample_rate, info.n_channels, info.n_samples) == (22050, 2, 22050)
    bad = tmp_path / "input"
    bad.write_bytes(b"GIF89a" + bytes(300))
    with pytest.raises(AudioError) as exc:
        check_audio(bad, "cat.gif")
    assert str(exc.value).startswith("cat.gif: not audio cunet can read (") and str(
        tmp_path
    ) not in str(exc.value)
    sf.write(path, np.zeros((100, 4), np.float32), 8000)
    with pytest.raises(AudioError, match="4 channels are not supported"):
        check_audio(path, "quad.wav")

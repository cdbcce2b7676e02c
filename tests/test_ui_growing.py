"""Uploads read while they arrive (`cunet.ui.growing`): the samples `AudioReader` gives for the finished file,
each block as soon as its bytes are in; formats that cannot be read so wait for their last byte."""

from __future__ import annotations

import io
import subprocess
import threading
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import synth_mixture

from cunet.errors import AudioError
from cunet.io.audio import AudioReader, ffmpeg_available
from cunet.ui.growing import NotStreamable, Upload, UploadReader


def encoded(fmt: str, subtype: str, seconds: float = 3.0, channels: int = 2) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, synth_mixture(seconds, 44100, channels), 44100, format=fmt, subtype=subtype)
    return buf.getvalue()


class Sender:
    """Writes `data` to the upload's file in parts, as the request receives it: the first `head` bytes at
    once, the rest when `go` is set (in 64 KiB parts)."""

    def __init__(self, upload: Upload, data: bytes, head: int) -> None:
        self.upload, self.data = upload, data
        self.file = open(upload.path, "xb")  # noqa: SIM115 - closed by the thread
        self.go = threading.Event()
        self._write(0, head)
        self.thread = threading.Thread(target=self._rest, args=(head,), daemon=True)
        self.thread.start()

    def _write(self, start: int, end: int) -> None:
        self.file.write(self.data[start:end])
        self.file.flush()
        self.upload.grew(end)

    def _rest(self, head: int) -> None:
        self.go.wait(10)
        for start in range(head, len(self.data), 1 << 16):
            self._write(start, min(len(self.data), start + (1 << 16)))
        self.file.close()
        self.upload.complete()


@pytest.mark.parametrize(
    "fmt, subtype, ext",
    [
        ("WAV", "PCM_16", "wav"),
        ("WAV", "FLOAT", "wav"),
        ("FLAC", "PCM_24", "flac"),
        ("AIFF", "PCM_16", "aiff"),
    ],
)
def test_an_upload_decodes_as_it_arrives_into_the_samples_of_the_finished_file(
    tmp_path, fmt, subtype, ext
):
    data = encoded(fmt, subtype, seconds=6.0)
    head = 1 << 18
    assert len(data) > 2 * head
    (tmp_path / f"whole.{ext}").write_bytes(data)
    upload = Upload(tmp_path / f"input.{ext}", len(data))
    sender = Sender(upload, data, head=head)
    with UploadReader(upload) as reader:  # opened from the first 256 KiB
        with AudioReader(tmp_path / f"whole.{ext}") as whole:
            assert reader.info == whole.info
            expected = np.concatenate(list(whole.blocks(10_000)))
        blocks = reader.blocks(10_000)
        first = next(blocks)  # what has arrived decodes at once
        assert upload.received == head and not upload.done
        sender.go.set()
        got = np.concatenate([first, *blocks])  # the rest waits for its bytes
    sender.thread.join(5)
    np.testing.assert_array_equal(got, expected)


def test_a_read_waits_for_its_bytes(tmp_path):
    data = encoded("WAV", "PCM_16", seconds=2.0)
    upload = Upload(tmp_path / "input.wav", len(data))
    sender = Sender(upload, data, head=1 << 12)
    with UploadReader(upload) as reader:
        got: list[np.ndarray] = []
        thread = threading.Thread(target=lambda: got.extend(reader.blocks(4096)))
        thread.start()
        time.sleep(0.2)
        assert (
            thread.is_alive() and len(got) <= 1
        )  # 4 KiB hold one block at most: the next one waits
        sender.go.set()
        thread.join(5)
    assert sum(len(b) for b in got) == reader.info.n_samples


def test_a_failed_upload_ends_the_reads_with_its_error(tmp_path):
    data = encoded("WAV", "PCM_16", seconds=2.0)
    upload = Upload(tmp_path / "input.wav", len(data))
    Sender(upload, data, head=1 << 14)
    with UploadReader(upload) as reader:
        errors: list[BaseException] = []

        def read() -> None:
            try:
                list(reader.blocks(4096))
            except BaseException as exc:  # noqa: BLE001 - checked below
                errors.append(exc)

        thread = threading.Thread(target=read)
        thread.start()
        time.sleep(0.1)
        upload.fail(AudioError("the upload was cut"))
        thread.join(5)
    assert not thread.is_alive() and str(errors[0]) == "the upload was cut"
    upload.fail(ConnectionError())  # a second failure keeps the first reason
    assert str(upload.error) == "the upload was cut"


def test_formats_whose_length_is_at_their_end_are_not_read_while_arriving(tmp_path):
    data = encoded("OGG", "VORBIS")
    upload = Upload(tmp_path / "input.ogg", len(data))
    Sender(upload, data, head=1 << 14)
    with pytest.raises(NotStreamable):
        UploadReader(upload)


def test_what_is_not_audio_or_not_arrived_is_not_streamable(tmp_path):
    upload = Upload(tmp_path / "input.wav", 10_000)
    Sender(upload, b"<html>not audio</html>" + bytes(9_978), head=10)
    with pytest.raises(NotStreamable):
        UploadReader(upload)
    buf = io.BytesIO()
    sf.write(buf, np.zeros((44100, 3), np.float32), 44100, format="WAV", subtype="PCM_16")
    upload = Upload(tmp_path / "three.wav", len(buf.getvalue()))
    Sender(upload, buf.getvalue(), head=1 << 16)
    with pytest.raises(NotStreamable):  # three channels: checked once complete, with its message
        UploadReader(upload)


@pytest.mark.skipif(not ffmpeg_available(), reason="needs ffmpeg")
def test_a_flac_whose_header_does_not_give_its_length_waits_for_its_end(tmp_path):
    piped = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=1",
            "-f",
            "flac",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout  # written to a pipe: no length in its header
    upload = Upload(tmp_path / "input.flac", len(piped))
    Sender(upload, piped, head=len(piped)).go.set()
    with pytest.raises(NotStreamable):
        UploadReader(upload)
    assert 0 < upload.fraction == 1.0

"""Audio through pipes: raw PCM and WAV read from a byte stream (stdin), raw PCM written to one (stdout).

Arrays are float32 [n_samples, n_channels]. Raw encodings are little-endian, interleaved: `f32le`
(float), `s16le` and `s24le` (integers, full scale 2**15 and 2**23). A WAV stream is parsed here
rather than by soundfile because a pipe cannot seek and the stdlib `wave` module reads no float
WAV: only the header is parsed (PCM 8/16/24/32-bit, float 32/64, WAVE_FORMAT_EXTENSIBLE), the
samples are decoded with NumPy. A header that announces a data size (not a streaming placeholder)
must be honoured: a stream that ends before it is reported as closed early, as is a raw stream that
ends in the middle of a sample frame.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import AudioError, UserError, literal
from .audio import MAX_RATE, MIN_RATE, Excerpt

RAW_ENCODINGS: dict[str, tuple[str, int]] = {
    "f32le": ("<f4", 4),
    "s16le": ("<i2", 2),
    "s24le": ("s24", 3),
}
INPUT_ENCODINGS = ("f32le", "s16le", "s24le")
# bytes per sample of every encoding, WAV's too
_SAMPLE_BYTES = {"u8": 1, "s16le": 2, "s24le": 3, "s32le": 4, "f32le": 4, "f64le": 8}
BITS_ENCODING = {"16": "s16le", "24": "s24le", "32f": "f32le"}  # --bits -> raw output encoding
MAX_CHANNELS = 2  # what cunet separates; more is refused from the header, before any sample is read
_MAX_FMT_CHUNK = 1024  # bytes; a real `fmt ` chunk is 16 to 40
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # data sizes streaming writers put in WAV headers (ffmpeg, sox)
_MAX_SKIPPED_CHUNK = 16 << 20  # bytes of non-audio WAV chunks read past before "data"
# the API's names of the raw-PCM settings, as error messages show them
RAW_NAMES = {"raw_format": "encoding", "raw_rate": "sample_rate", "raw_channels": "n_channels"}


@dataclass(frozen=True)
class RawFormat:
    """Headerless PCM: `encoding` (INPUT_ENCODINGS), `sample_rate` (Hz) and `n_channels` (1 or 2)."""

    encoding: str
    sample_rate: int
    n_channels: int

    def validate(self) -> RawFormat:
        if self.encoding not in INPUT_ENCODINGS:
            raise UserError(
                f"unknown {{raw_format}} '{self.encoding}' (valid: {', '.join(INPUT_ENCODINGS)})",
                names=RAW_NAMES,
            )
        if not MIN_RATE <= self.sample_rate <= MAX_RATE:
            raise UserError(
                f"{{raw_rate}} must be a sample rate in Hz in [{MIN_RATE}, {MAX_RATE}], "
                f"got {self.sample_rate}",
                names=RAW_NAMES,
            )
        if self.n_channels not in (1, 2):
            raise UserError(
                f"{{raw_channels}} must be 1 or 2, got {self.n_channels}", names=RAW_NAMES
            )
        return self

    @property
    def frame_bytes(self) -> int:
        return RAW_ENCODINGS[self.encoding][1] * self.n_channels


def decode(data: bytes, encoding: str, n_channels: int) -> np.ndarray:
    """Raw interleaved PCM (whole frames) -> float32 [n_frames, n_channels]."""
    dtype, width = RAW_ENCODINGS[encoding]
    if dtype == "s24":
        b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
        ints = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8  # sign-extend 24 bits
        x = ints.astype(np.float32) / np.float32(1 << 23)
    elif dtype == "<f4":
        x = np.frombuffer(data, "<f4").astype(np.float32)
    else:
        x = np.frombuffer(data, dtype).astype(np.float32) / np.float32(1 << (8 * width - 1))
    return x.reshape(-1, n_channels)


def encode(block: np.ndarray, encoding: str) -> bytes:
    """float32 [n_frames, n_channels] -> raw interleaved PCM; integers are rounded and clamped."""
    x = np.asarray(block, np.float32)
    if encoding == "f32le":
        return x.astype("<f4").tobytes()
    bits = 16 if encoding == "s16le" else 24
    scale = 1 << (bits - 1)
    ints = np.clip(np.rint(x.astype(np.float64) * scale), -scale, scale - 1).astype("<i4")
    if bits == 16:
        return ints.astype("<i2").tobytes()
    return ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()


class StreamReader:
    """Audio from a byte stream: raw PCM in `raw`'s format, or (raw None) a WAV header and its samples.

    `sample_rate` and `n_channels` are known after construction (the header is read then);
    `blocks(block_frames)` yields float32 [<= block_frames, n_channels] until the stream ends.
    name: how messages call the stream ("stdin").
    """

    def __init__(self, stream: BinaryIO, raw: RawFormat | None = None, name: str = "stdin") -> None:
        self.stream, self.name = stream, name
        self._pending = b""
        if raw is not None:
            raw.validate()
            self.encoding, self.sample_rate, self.n_channels = (
                raw.encoding,
                raw.sample_rate,
                raw.n_channels,
            )
            self._left: int | None = None
            self._pending = self._read(1)
            if not self._pending:
                raise AudioError(f"{name}: no data (the stream is empty)")
        else:
            self._read_wav_header()
        self.frame_bytes = _SAMPLE_BYTES[self.encoding] * self.n_channels

    def _read(self, n: int) -> bytes:
        """n bytes, or fewer at the end of the stream (unbuffered pipes return what they have: read on)."""
        parts, have = [], 0
        try:
            while have < n:
                data = self.stream.read(n - have)
                if not data:
                    break
                parts.append(data)
                have += len(data)
        except OSError as exc:
            raise AudioError(f"{self.name}: cannot read ({exc.strerror or exc})") from None
        return b"".join(parts)

    def _exact(self, n: int, what: str) -> bytes:
        data = self._read(n)
        if len(data) < n:
            if not data and what == "a WAV header":
                raise AudioError(f"{self.name}: no data (the stream is empty)")
            raise AudioError(
                f"{self.name}: the stream ended inside {what} (closed early or not WAV?)"
            )
        return data

    def _read_wav_header(self) -> None:
        head = self._exact(12, "a WAV header")
        if head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            raise AudioError(
                f"{literal(self.name)}: not a WAV stream (no RIFF/WAVE header); for headerless PCM give "
                "{raw_format}, {raw_rate} and {raw_channels}",
                names=RAW_NAMES,
            )
        if head[:4] == b"RIFX":
            raise AudioError(f"{self.name}: big-endian WAV (RIFX) is not supported")
        fmt = None
        skipped = 0
        while True:
            chunk_id, size = struct.unpack("<4sI", self._exact(8, "a WAV header"))
            if chunk_id == b"data":
                break
            if chunk_id == b"fmt ":
                if size > _MAX_FMT_CHUNK:
                    raise AudioError(
                        f"{self.name}: invalid WAV header (a format chunk of {size} bytes; "
                        f"at most {_MAX_FMT_CHUNK} expected)"
                    )
                fmt = self._exact(size + (size & 1), "the WAV format chunk")[:size]
                continue
            skipped += size + (size & 1)
            if skipped > _MAX_SKIPPED_CHUNK:
                raise AudioError(
                    f"{self.name}: more than {_MAX_SKIPPED_CHUNK >> 20} MiB of WAV header before "
                    "the samples; not a WAV stream?"
                )
            self._exact(size + (size & 1), "a WAV header chunk")
        if fmt is None or len(fmt) < 16:
            raise AudioError(f"{self.name}: WAV stream without a format chunk before its samples")
        tag, channels, rate, _, align, bits = struct.unpack("<HHIIHH", fmt[:16])
        if tag == 0xFFFE and len(fmt) >= 26:
            tag = struct.unpack("<H", fmt[24:26])[
                0
            ]  # the sub-format GUID starts with the format tag
        encodings = {
            (1, 8): "u8",
            (1, 16): "s16le",
            (1, 24): "s24le",
            (1, 32): "s32le",
            (3, 32): "f32le",
            (3, 64): "f64le",
        }
        encoding = encodings.get((tag, bits))
        if encoding is None:
            raise AudioError(
                f"{self.name}: unsupported WAV sample format (format tag {tag}, {bits} bits); "
                "convert it, e.g. with ffmpeg -f wav -c:a pcm_f32le"
            )
        if not 0 < rate <= MAX_RATE or channels < 1 or align != channels * bits // 8:
            raise AudioError(
                f"{self.name}: invalid WAV header ({channels} channels, {rate} Hz, {bits} bits)"
            )
        if channels > MAX_CHANNELS:
            raise AudioError(
                f"{self.name}: {channels} channels are not supported; only mono and stereo "
                "(downmix first, e.g. ffmpeg -i in.wav -ac 2 -f wav -)"
            )
        if rate < MIN_RATE:
            raise AudioError(
                f"{self.name}: a sample rate of {rate} Hz is too low (at least {MIN_RATE} Hz)"
            )
        self.encoding, self.sample_rate, self.n_channels = encoding, int(rate), int(channels)
        self._left = None if size in _UNKNOWN_SIZES else size

    def blocks(self, block_frames: int = 4096) -> Iterator[np.ndarray]:
        """float32 [<= block_frames, n_channels] blocks until the stream (or the WAV data) ends."""
        want = block_frames * self.frame_bytes
        announced = self._left
        while True:
            n = want if self._left is None else min(want, self._left)
            data = self._pending + (
                self._read(n - len(self._pending)) if n > len(self._pending) else b""
            )
            self._pending = b""
            if self._left is not None:
                self._left -= len(data)
            whole = len(data) - len(data) % self.frame_bytes
            if whole:
                yield _decode_any(data[:whole], self.encoding, self.n_channels)
            if len(data) < n or (self._left is not None and self._left <= 0):
                if self._left and announced is not None:
                    got, expected = (
                        (announced - self._left) // self.frame_bytes,
                        announced // self.frame_bytes,
                    )
                    raise AudioError(
                        f"{self.name}: the stream ended after {got} of the {expected} samples its WAV "
                        "header announced (closed early?)"
                    )
                if len(data) % self.frame_bytes:
                    raise AudioError(
                        f"{literal(self.name)}: the stream ended in the middle of a sample frame "
                        f"({len(data) % self.frame_bytes} stray bytes; broken stream, or wrong "
                        "{raw_format} / {raw_channels}?)",
                        names=RAW_NAMES,
                    )
                return


def _decode_any(data: bytes, encoding: str, n_channels: int) -> np.ndarray:
    """`decode` plus the WAV-only encodings (unsigned 8-bit, 32-bit integer, 64-bit float).
    float64 beyond float32's range becomes inf (refused later as non-finite), without NumPy's warning."""
    if encoding == "f64le":
        with np.errstate(over="ignore", invalid="ignore"):
            return np.frombuffer(data, "<f8").astype(np.float32).reshape(-1, n_channels)
    if encoding == "u8":
        return ((np.frombuffer(data, np.uint8).astype(np.float32) - 128) / 128).reshape(
            -1, n_channels
        )
    if encoding == "s32le":
        return (
            (np.frombuffer(data, "<i4").astype(np.float64) / (1 << 31))
            .astype(np.float32)
            .reshape(-1, n_channels)
        )
    return decode(data, encoding, n_channels)


def excerpt_blocks(
    blocks: Iterable[np.ndarray], excerpt: Excerpt, sample_rate: int
) -> Iterator[np.ndarray]:
    """The part of a block stream an `Excerpt` selects (a pipe cannot seek: earlier samples are read past).
    AudioError if the stream ends before the excerpt's start."""
    first, count = excerpt.validate().frames(sample_rate)
    seen = 0
    for block in blocks:
        lo, hi = (
            max(0, first - seen),
            block.shape[0] if count is None else min(block.shape[0], first + count - seen),
        )
        seen += block.shape[0]
        if hi > lo:
            yield block[lo:hi]
        if count is not None and seen >= first + count:
            return
    if seen <= first:
        raise AudioError(
            f"{{start}} {excerpt.start:g} s is at or past the end of the stream "
            f"({seen / sample_rate:.3f} s)",
            names={"start": "start"},
        )


def spool(reader: StreamReader, path: str | os.PathLike, block_frames: int = 1 << 16) -> Path:
    """Copy a stream into a float WAV at `path` (bounded memory), for callers that need the length first."""
    import soundfile as sf

    with sf.SoundFile(
        str(path), "w", reader.sample_rate, reader.n_channels, subtype="FLOAT"
    ) as out:
        for block in reader.blocks(block_frames):
            out.write(block)
    return Path(path)


@contextlib.contextmanager
def stdin_file(raw: RawFormat | None = None, stream: BinaryIO | None = None) -> Iterator[Path]:
    """Standard input (or `stream`) spooled to a temporary float WAV, removed afterwards; it takes
    4 bytes per sample on disk ($TMPDIR), no more memory than a block."""
    with tempfile.TemporaryDirectory(prefix="cunet-stdin-") as tmp:
        reader = StreamReader(stream if stream is not None else stdin_bytes(), raw)
        yield spool(reader, Path(tmp) / "stdin.wav")


def stdin_bytes() -> BinaryIO:
    """Standard input as an unbuffered byte stream. Unbuffered, because a thread blocked reading the
    buffered `sys.stdin.buffer` holds its lock, and an interpreter that exits meanwhile (an error
    elsewhere) then aborts with a fatal error instead of the one-line message."""
    try:
        return open(sys.stdin.fileno(), "rb", buffering=0, closefd=False)
    except (
        AttributeError,
        OSError,
        ValueError,
    ):  # replaced by an in-memory stream (tests, embedding)
        return sys.stdin.buffer

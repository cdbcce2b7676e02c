"""Audio file input/output without TensorFlow: streaming readers, atomic writers, resampling.

Arrays are float32 [n_samples, n_channels], values nominally in [-1, 1].
Formats soundfile reads (wav, flac, ogg, ...) are streamed directly; others
(mp3, m4a/aac, NI .stem.mp4 whose first audio stream is the mixture) are
decoded by ffmpeg into a temporary float wav first, so memory stays bounded.
An `Excerpt` is read by seeking (soundfile) or by ffmpeg's input seeking
(`-ss`/`-t` before `-i`), never by decoding the whole file and discarding.
"""

from __future__ import annotations

import math
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import AudioError, UserError
from .atomic import PARTIAL_SUFFIX, StagedFile, remove_stale_partials

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioError",
    "AudioInfo",
    "AudioReader",
    "AtomicAudioWriter",
    "BITS",
    "Excerpt",
    "OUTPUT_FORMATS",
    "PARTIAL_SUFFIX",
    "ffmpeg_available",
    "input_stem",
    "load_audio",
    "remove_stale_partials",
    "write_audio",
]

SOUNDFILE_EXTENSIONS = {
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".aiff",
    ".aif",
    ".au",
    ".snd",
    ".w64",
    ".caf",
}
# What a folder scan takes for audio (explicitly named files are tried whatever their extension).
AUDIO_EXTENSIONS = frozenset(
    SOUNDFILE_EXTENSIONS
    | {
        ".mp3",
        ".mp2",
        ".m4a",
        ".aac",
        ".mp4",
        ".opus",
        ".wma",
        ".mka",
        ".webm",
        ".ac3",
        ".ape",
        ".wv",
        ".amr",
    }
)
OUTPUT_FORMATS = ("wav", "flac", "mp3")
BITS = ("16", "24", "32f")  # sample formats: 16- or 24-bit integer, 32-bit float
_SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "32f": "FLOAT"}


def input_stem(path: str | os.PathLike) -> str:
    """Output folder name for an input: the file name without its extension(s) (`x.stem.mp4` -> `x`)."""
    name = Path(path).name
    lower = name.lower()
    for ext in (".stem.mp4", ".stem.m4a"):
        if lower.endswith(ext):
            stem = name[: -len(ext)]
            break
    else:
        stem = Path(name).stem
    # "..wav" / "...wav" would give "." / "..": outputs in, or above, the output directory.
    if stem in ("", ".", ".."):
        stem = name if name not in ("", ".", "..") else "input"
    return stem


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None


@dataclass
class AudioInfo:
    sample_rate: int
    n_channels: int
    n_samples: int


@dataclass(frozen=True)
class Excerpt:
    """The part of an input to separate: from `start` seconds on, `duration` seconds long (None: to the end)."""

    start: float = 0.0
    duration: float | None = None

    def validate(self) -> Excerpt:
        """Self, or UserError naming the option (--start, --duration) for negative, zero or non-finite values."""
        if not _finite(self.start) or self.start < 0:
            raise UserError(f"--start must be a number of seconds >= 0, got {self.start!r}")
        if self.duration is not None and (not _finite(self.duration) or self.duration <= 0):
            raise UserError(
                f"--duration must be a positive number of seconds, got {self.duration!r}"
            )
        return self

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.duration is None

    def frames(self, sample_rate: int) -> tuple[int, int | None]:
        """(first frame, number of frames or None for "to the end") at sample_rate Hz."""
        count = None if self.duration is None else int(round(self.duration * sample_rate))
        if count == 0:
            raise AudioError(
                f"--duration {self.duration:g} s is shorter than one sample at {sample_rate} Hz"
            )
        return int(round(self.start * sample_rate)), count


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class AudioReader:
    """Reads an audio file block by block.

    Use as a context manager; `info` gives rate, channels and length (of the excerpt, if one is given);
    `blocks(block_size)` yields float32 [<=block_size, n_channels] arrays.
    excerpt: read only that part (soundfile seeks; ffmpeg seeks before decoding).
    """

    def __init__(self, path: str | os.PathLike, excerpt: Excerpt | None = None) -> None:
        self.path = Path(path)
        self.excerpt = (excerpt or Excerpt()).validate()
        self._tmpdir: tempfile.TemporaryDirectory | None = None
        self._file = None
        self._offset = 0  # first frame of the excerpt in the opened file
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise AudioError(f"{self.path}: no such file") from None
        except OSError as exc:
            raise AudioError(f"{self.path}: cannot read ({exc.strerror or exc})") from None
        if stat.S_ISDIR(st.st_mode):
            raise AudioError(f"{self.path}: is a directory, not an audio file")
        if not stat.S_ISREG(st.st_mode):  # FIFO, device, socket: reading could block or never end
            raise AudioError(
                f"{self.path}: not a regular file (a pipe, device or socket); give an audio file"
            )
        if st.st_size == 0:
            raise AudioError(f"{self.path}: file is empty")
        source = self.path
        if self.path.suffix.lower() not in SOUNDFILE_EXTENSIONS:
            try:
                source = self._decode_with_ffmpeg()
            except BaseException:
                self.close()
                raise
        import soundfile as sf

        try:
            self._file = sf.SoundFile(str(source))
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            if source is self.path and ffmpeg_available():
                # Misnamed or exotic files: let ffmpeg try before giving up.
                try:
                    source = self._decode_with_ffmpeg()
                    self._file = sf.SoundFile(str(source))
                except AudioError:
                    self.close()
                    raise
                except (sf.LibsndfileError, RuntimeError) as exc2:
                    self.close()
                    raise AudioError(f"{self.path}: cannot decode audio ({_short(exc2)})") from None
            else:
                self.close()
                raise AudioError(f"{self.path}: cannot decode audio ({_short(exc)})") from None
        f = self._file
        seeked = source is not self.path  # ffmpeg decoded the excerpt only
        if f.frames <= 0:
            self.close()
            if seeked and self.excerpt.start > 0:
                raise AudioError(
                    f"{self.path}: --start {self.excerpt.start:g} s is at or past the end of the audio"
                )
            raise AudioError(f"{self.path}: contains no audio samples")
        if f.samplerate <= 0:
            self.close()
            raise AudioError(f"{self.path}: invalid sample rate {f.samplerate}")
        n_frames = int(f.frames)
        if not seeked and not self.excerpt.whole:
            try:
                self._offset, count = self.excerpt.frames(int(f.samplerate))
            except AudioError:
                self.close()
                raise
            if self._offset >= n_frames:
                self.close()
                raise AudioError(
                    f"{self.path}: --start {self.excerpt.start:g} s is at or past the end of the audio "
                    f"({n_frames / f.samplerate:.3f} s)"
                )
            n_frames = min(n_frames - self._offset, count if count is not None else n_frames)
        self.info = AudioInfo(int(f.samplerate), int(f.channels), n_frames)

    def _decode_with_ffmpeg(self) -> Path:
        if not ffmpeg_available():
            raise AudioError(
                f"{self.path}: reading '{self.path.suffix}' files needs ffmpeg, which is not installed"
            )
        self._tmpdir = tempfile.TemporaryDirectory(prefix="cunet-decode-")
        out = Path(self._tmpdir.name) / "decoded.wav"
        seek = [] if self.excerpt.start == 0 else ["-ss", f"{self.excerpt.start:.6f}"]
        if self.excerpt.duration is not None:
            seek += ["-t", f"{self.excerpt.duration:.6f}"]
        cmd = [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            *seek,
            "-i",
            str(self.path),
            "-map",
            "0:a:0",
            "-vn",
            "-c:a",
            "pcm_f32le",
            "-f",
            "wav",
            str(out),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if "matches no streams" in proc.stderr:
            raise AudioError(f"{self.path}: no audio stream (a video-only or data file?)")
        if proc.returncode == 0 and out.exists() and seek:
            return out  # an excerpt past the end decodes to no samples: reported by the caller
        if proc.returncode != 0 or not out.exists() or out.stat().st_size <= 44:
            message = (proc.stderr.strip().splitlines() or ["no audio stream"])[-1]
            raise AudioError(f"{self.path}: cannot decode audio ({message})")
        return out

    def blocks(self, block_size: int) -> Iterator[np.ndarray]:
        assert self._file is not None
        left = self.info.n_samples
        try:
            self._file.seek(self._offset)
            while left > 0:
                block = self._file.read(min(block_size, left), dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    return
                left -= block.shape[0]
                yield block
        except (
            RuntimeError,
            OSError,
        ) as exc:  # LibsndfileError is a RuntimeError (truncated/corrupt data)
            raise AudioError(f"{self.path}: cannot decode audio ({_short(exc)})") from None

    def read(self) -> np.ndarray:
        """The whole file (or excerpt) as float32 [n_samples, n_channels]."""
        assert self._file is not None
        try:
            self._file.seek(self._offset)
            return self._file.read(self.info.n_samples, dtype="float32", always_2d=True)
        except (RuntimeError, OSError) as exc:
            raise AudioError(f"{self.path}: cannot decode audio ({_short(exc)})") from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def load_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a whole file: (float32 [n_samples, n_channels], sample_rate in Hz)."""
    with AudioReader(path) as reader:
        return reader.read(), reader.info.sample_rate


class AtomicAudioWriter:
    """Writes audio blocks to a hidden partial file (`cunet.io.atomic.StagedFile`); `commit()` renames it
    into place. If the process dies or `abort()` is called, no file ever appears at `path`.

    bits: "16", "24" (integer samples; wav or flac) or "32f" (float; wav only). mp3 is encoded by ffmpeg
    from a temporary float wav at finish time, at `mp3_bitrate` kbit/s. clip: clamp samples to [-1, 1]
    (None: yes, unless the file holds floats); `n_clipped` counts the sample values clamped.
    float32=True is the older spelling of bits="32f".
    """

    def __init__(
        self,
        path: str | os.PathLike,
        sample_rate: int,
        n_channels: int,
        fmt: str = "wav",
        float32: bool = False,
        staging_dir: str | os.PathLike | None = None,
        bits: str | None = None,
        clip: bool | None = None,
        mp3_bitrate: int = 320,
    ) -> None:
        import soundfile as sf

        if fmt not in OUTPUT_FORMATS:
            raise AudioError(f"unknown output format '{fmt}' (valid: {', '.join(OUTPUT_FORMATS)})")
        bits = bits or ("32f" if float32 else "16")
        if bits not in BITS or (fmt == "flac" and bits == "32f"):
            raise AudioError(
                f"cannot write {bits}-bit samples to {fmt} (valid: wav {', '.join(BITS)}; flac 16, 24)"
            )
        if fmt == "mp3" and not ffmpeg_available():
            raise AudioError("writing mp3 needs ffmpeg, which is not installed")
        self.path = Path(path)
        self.fmt = fmt
        self.mp3_bitrate = int(mp3_bitrate)
        self._staged = StagedFile(self.path, staging_dir or None)
        floats = fmt == "mp3" or bits == "32f"
        self.clip = (fmt == "mp3" or bits != "32f") if clip is None else clip
        file_format = "WAV" if fmt in ("wav", "mp3") else "FLAC"
        subtype = "FLOAT" if floats else _SUBTYPES[bits]
        try:
            self._file = sf.SoundFile(
                str(self.partial),
                "w",
                samplerate=sample_rate,
                channels=n_channels,
                format=file_format,
                subtype=subtype,
            )
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            self._staged.abort()  # e.g. a full disk: the file may exist with 0 bytes
            reason = _short(exc).replace(f"Error opening '{self.partial}': ", "")
            raise AudioError(
                f"cannot write '{self.path}' (disk full or not writable?): {reason}"
            ) from None
        self.n_written = 0
        self.n_clipped = 0
        self._finished = False

    @property
    def partial(self) -> Path:
        """The hidden file being written."""
        return self._staged.partial

    def write(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32)
        if self.clip:
            self.n_clipped += int(np.count_nonzero(np.abs(block) > 1.0))
            block = np.clip(block, -1.0, 1.0)
        try:
            self._file.write(block)
        except (RuntimeError, OSError) as exc:  # disk full, file size limit, I/O error
            raise AudioError(f"cannot write '{self.path}' (disk full?): {_short(exc)}") from None
        self.n_written += block.shape[0]

    def finish(self) -> None:
        """Close (and for mp3 encode) the partial file, so `commit()` only has to rename it. Idempotent."""
        if self._finished:
            return
        try:
            self._file.close()
        except (RuntimeError, OSError) as exc:
            raise AudioError(f"cannot write '{self.path}': {_short(exc)}") from None
        if self.fmt == "mp3":
            wav = self._staged.partial
            encoded = wav.with_name(wav.name + ".mp3")
            cmd = [
                "ffmpeg",
                "-nostdin",
                "-v",
                "error",
                "-y",
                "-i",
                str(wav),
                "-c:a",
                "libmp3lame",
                "-b:a",
                f"{self.mp3_bitrate}k",
                "-f",
                "mp3",
                str(encoded),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            wav.unlink(missing_ok=True)
            self._staged.partial = encoded
            if proc.returncode != 0:
                self._staged.abort()
                raise AudioError(
                    f"cannot encode mp3: {(proc.stderr.strip().splitlines() or ['ffmpeg failed'])[-1]}"
                )
        self._finished = True

    def commit(self, overwrite: bool = True) -> Path:
        """Finish the file and rename it to `path` (atomic within one file system).

        overwrite=False: AudioError if `path` exists, even if another process created it meanwhile.
        """
        self.finish()
        try:
            return self._staged.commit(overwrite)
        except FileExistsError:
            raise AudioError(
                f"output '{self.path}' exists (written meanwhile by another process?); "
                "use --force to overwrite"
            ) from None

    def abort(self) -> None:
        try:
            self._file.close()
        except Exception:  # noqa: BLE001 - best effort while already failing
            pass
        self._staged.abort()


def write_audio(
    path: str | os.PathLike, audio: np.ndarray, sample_rate: int, fmt: str | None = None
) -> Path:
    """Write a whole array [n_samples, n_channels] atomically; the format follows the extension by default."""
    path = Path(path)
    audio = np.asarray(audio, np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    writer = AtomicAudioWriter(
        path, sample_rate, audio.shape[1], fmt or path.suffix.lstrip(".").lower() or "wav"
    )
    try:
        writer.write(audio)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise

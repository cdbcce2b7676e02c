"""Reading audio files without TensorFlow: streaming readers, excerpts, input names.

Arrays are float32 [n_samples, n_channels], values nominally in [-1, 1].
Formats soundfile reads (wav, flac, ogg, ...) are streamed directly; others
(mp3, m4a/aac, NI .stem.mp4 whose first audio stream is the mixture) are
decoded by ffmpeg into a temporary float wav first, so memory stays bounded.
An `Excerpt` is read by seeking (soundfile) or by ffmpeg's input seeking
(`-ss`/`-t` before `-i`), never by decoding the whole file and discarding.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AudioError, UserError, literal

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioInfo",
    "MAX_WHOLE_SECONDS",
    "AudioReader",
    "Excerpt",
    "check_whole_length",
    "ffmpeg_available",
    "input_stem",
    "load_audio",
    "short_reason",
]

SOUNDFILE_EXTENSIONS = set(".wav .flac .ogg .oga .aiff .aif .au .snd .w64 .caf".split())
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


MIN_RATE = (
    1000  # Hz; below, a few bytes stand for hours of audio once resampled to the model's rate
)
MAX_RATE = 768_000
# --start / --duration: 10 days; more is no audio anyone has, and it keeps sample counts exact integers.
MAX_SECONDS = 864_000.0
# `load_audio` holds a whole file, and training caches its spectrogram whole: about 2 MB of memory per
# second of a stem (3 MB for a track of four stems and a mixture), so 20 minutes stay under 4 GB.
MAX_WHOLE_SECONDS = 1200.0


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
        """Self, or UserError naming `start` or `duration` for negative, zero, non-finite or huge values."""
        if not _finite(self.start) or not 0 <= self.start <= MAX_SECONDS:
            raise UserError(
                f"{{start}} must be a number of seconds in [0, {MAX_SECONDS:g}], got {self.start!r}",
                names={"start": "start"},
            )
        if self.duration is not None and (
            not _finite(self.duration) or not 0 < self.duration <= MAX_SECONDS
        ):
            raise UserError(
                f"{{duration}} must be a number of seconds in (0, {MAX_SECONDS:g}], "
                f"got {self.duration!r}",
                names={"duration": "duration"},
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
                f"{{duration}} {self.duration:g} s is shorter than one sample at {sample_rate} Hz",
                names={"duration": "duration"},
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
            self._file = open_soundfile(source)
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            if source is self.path and ffmpeg_available():
                # Misnamed or exotic files: let ffmpeg try before giving up.
                try:
                    source = self._decode_with_ffmpeg()
                    self._file = open_soundfile(source)
                except AudioError:
                    self.close()
                    raise
                except (sf.LibsndfileError, RuntimeError) as exc2:
                    self.close()
                    raise AudioError(
                        f"{self.path}: cannot decode audio ({short_reason(exc2)})"
                    ) from None
            else:
                self.close()
                raise AudioError(
                    f"{self.path}: cannot decode audio ({short_reason(exc)})"
                ) from None
        f = self._file
        seeked = source is not self.path  # ffmpeg decoded the excerpt only
        if f.frames <= 0:
            self.close()
            if seeked and self.excerpt.start > 0:
                raise AudioError(
                    f"{literal(self.path)}: {{start}} {self.excerpt.start:g} s is at or past the end of the audio",
                    names={"start": "start"},
                )
            raise AudioError(f"{self.path}: contains no audio samples")
        if not MIN_RATE <= f.samplerate <= MAX_RATE:
            self.close()
            raise AudioError(
                f"{self.path}: unsupported sample rate {f.samplerate} Hz "
                f"(cunet reads {MIN_RATE} to {MAX_RATE} Hz)"
            )
        n_frames = int(f.frames)
        if seeked and self.excerpt.duration is not None:
            # ffmpeg rounds a duration below one sample to "no limit": enforce the excerpt's length
            try:
                count = self.excerpt.frames(int(f.samplerate))[1]
            except AudioError:
                self.close()
                raise
            n_frames = min(n_frames, count if count is not None else n_frames)
        if not seeked and not self.excerpt.whole:
            try:
                self._offset, count = self.excerpt.frames(int(f.samplerate))
            except AudioError:
                self.close()
                raise
            if self._offset >= n_frames:
                self.close()
                raise AudioError(
                    f"{literal(self.path)}: {{start}} {self.excerpt.start:g} s is at or past the end of the audio "
                    f"({n_frames / f.samplerate:.3f} s)",
                    names={"start": "start"},
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
        before = self.path.stat().st_size
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        try:
            shrank = self.path.stat().st_size < before  # ffmpeg decodes what it finds
        except OSError:
            shrank = True
        if shrank:
            raise AudioError(f"{self.path}: the file shrank or vanished while it was decoded")
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
                want = min(block_size, left)
                block = self._file.read(want, dtype="float32", always_2d=True)
                left -= block.shape[0]
                if block.shape[0] < want:
                    raise AudioError(
                        f"{self.path}: the file ended after {self.info.n_samples - left} of its "
                        f"{self.info.n_samples} samples (it shrank while it was read?)"
                    )
                yield block
        except (
            RuntimeError,
            OSError,
        ) as exc:  # LibsndfileError is a RuntimeError (truncated/corrupt data)
            raise AudioError(f"{self.path}: cannot decode audio ({short_reason(exc)})") from None

    def read(self) -> np.ndarray:
        """The whole file (or excerpt) as float32 [n_samples, n_channels]."""
        assert self._file is not None
        try:
            self._file.seek(self._offset)
            audio = self._file.read(self.info.n_samples, dtype="float32", always_2d=True)
        except (RuntimeError, OSError) as exc:
            raise AudioError(f"{self.path}: cannot decode audio ({short_reason(exc)})") from None
        if audio.shape[0] < self.info.n_samples:
            raise AudioError(
                f"{self.path}: the file ended after {audio.shape[0]} of its {self.info.n_samples} "
                "samples (it shrank while it was read?)"
            )
        return audio

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


def open_soundfile(path: str | os.PathLike, mode: str = "r", **kwargs: object) -> Any:
    """A `soundfile.SoundFile` on `path` opened through a file descriptor: libsndfile then sees no
    name, so names that are not UTF-8 or longer than its 1 kB limit (deep folders) work too.
    Writing creates or truncates the file; kwargs go to SoundFile (format, subtype, ...)."""
    import soundfile as sf

    flags = os.O_RDONLY if mode == "r" else os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        return sf.SoundFile(fd, mode, closefd=True, **kwargs)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


def short_reason(exc: BaseException) -> str:
    reason = getattr(exc, "error_string", None)  # libsndfile's own words, without the file's name
    text = (reason if isinstance(reason, str) and reason else str(exc)).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def load_audio(path: str | os.PathLike, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Read a whole file: (float32 [n_samples, n_channels], sample_rate in Hz).

    max_seconds: the longest file read (None: MAX_WHOLE_SECONDS); a longer one is refused before any
    sample is decoded (`check_whole_length`; ffmpeg formats are decoded only a second past it)."""
    limit = MAX_WHOLE_SECONDS if max_seconds is None else max_seconds
    cap = None if Path(path).suffix.lower() in SOUNDFILE_EXTENSIONS else Excerpt(0.0, limit + 1)
    with AudioReader(path, cap) as reader:
        check_whole_length(reader.path, reader.info, limit, cut=cap is not None)
        return reader.read(), reader.info.sample_rate


def check_whole_length(
    path: object, info: AudioInfo, limit: float | None = None, cut: bool = False
) -> None:
    """AudioError naming `path` and its length when it lasts more than `limit` seconds (None:
    MAX_WHOLE_SECONDS) or holds more samples than that of 96 kHz stereo; `cut`: read only that far."""
    limit = MAX_WHOLE_SECONDS if limit is None else limit
    seconds = info.n_samples / info.sample_rate
    if seconds > limit or info.n_samples * info.n_channels > limit * 96_000 * 2:
        length = f"longer than {limit:g} s" if cut else f"{seconds:.0f} s long"
        raise AudioError(
            f"{path}: {length} ({info.sample_rate} Hz, {info.n_channels} ch); a file read whole (a "
            f"stem for training or evaluation) may last {limit:g} s ({limit / 60:g} min; less above "
            "96 kHz stereo); cut it into shorter tracks"
        )

"""Writing audio files atomically: a hidden partial file, renamed into place when complete.

Arrays are float32 [n_samples, n_channels], values nominally in [-1, 1]. wav and flac are written by
soundfile block by block; mp3 is encoded by ffmpeg from a temporary float wav when the file is finished.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np

from ..errors import AudioError, literal
from .atomic import StagedFile
from .audio import ffmpeg_available, open_soundfile, short_reason

__all__ = ["BITS", "OUTPUT_FORMATS", "AtomicAudioWriter", "write_audio"]

OUTPUT_FORMATS = ("wav", "flac", "mp3")
BITS = ("16", "24", "32f")  # sample formats: 16- or 24-bit integer, 32-bit float
_SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "32f": "FLOAT"}


class AtomicAudioWriter:
    """Writes audio blocks to a hidden partial file (`cunet.io.atomic.StagedFile`); `commit()` renames it
    into place. If the process dies or `abort()` is called, no file ever appears at `path`.

    bits: "16", "24" (integer samples; wav or flac) or "32f" (float; wav only). mp3 is encoded by ffmpeg
    from a temporary float wav at finish time, at `mp3_bitrate` kbit/s. clip: clamp samples to [-1, 1]
    (None: yes, unless the file holds floats); `n_clipped` counts the sample values clamped.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        sample_rate: int,
        n_channels: int,
        fmt: str = "wav",
        bits: str = "16",
        *,
        staging_dir: str | os.PathLike | None = None,
        clip: bool | None = None,
        mp3_bitrate: int = 320,
    ) -> None:
        import soundfile as sf

        if fmt not in OUTPUT_FORMATS:
            raise AudioError(f"unknown output format '{fmt}' (valid: {', '.join(OUTPUT_FORMATS)})")
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
            self._file = open_soundfile(
                self.partial,
                "w",
                samplerate=sample_rate,
                channels=n_channels,
                format=file_format,
                subtype=subtype,
            )
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            self._staged.abort()  # e.g. a full disk: the file may exist with 0 bytes
            reason = short_reason(exc)
            if reason.startswith("Error opening "):  # it names the hidden partial file
                reason = reason.split(": ", 1)[-1]
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
            raise AudioError(
                f"cannot write '{self.path}' (disk full?): {short_reason(exc)}"
            ) from None
        self.n_written += block.shape[0]

    def finish(self) -> None:
        """Close (and for mp3 encode) the partial file, so `commit()` only has to rename it. Idempotent."""
        if self._finished:
            return
        try:
            self._file.close()
        except (RuntimeError, OSError) as exc:
            raise AudioError(f"cannot write '{self.path}': {short_reason(exc)}") from None
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
                f"output '{literal(self.path)}' exists (written meanwhile by another process?); "
                "use {force} to overwrite",
                names={"force": "overwrite=True"},
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

"""The files one input becomes: output settings, checks before any work, clipping, publishing together.

Clipping (`OutputSettings.clip`):
- "clamp" cuts samples beyond full scale to [-1, 1] and counts them (`StemFiles.summary`);
- "none" keeps them (only 32-bit float wav can);
- "rescale" gives all outputs of one input ONE gain, so stems still add up to the (scaled) mixture
  estimate and residuals to the scaled mixture: the peak is known only at the end, so the outputs are
  first written as float partials (disk, not memory: bounded whatever the length), then on `finish`
  read back block by block, multiplied by min(1, 1 / peak) and written in the requested format. The
  cost is a second pass over the outputs and float-sized partial files meanwhile.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import AudioError, UserError, literal
from .atomic import make_dirs
from .audio import open_soundfile
from .writer import BITS, OUTPUT_FORMATS, AtomicAudioWriter

CLIP_MODES = ("rescale", "clamp", "none")
MP3_BITRATES = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_BLOCK = 1 << 16


# the API's names of the output settings, as error messages show them
_NAMES = {"bits": "bits", "clip": "clip", "mp3_bitrate": "mp3_bitrate"}


@dataclass(frozen=True)
class OutputSettings:
    """fmt: wav, flac or mp3. bits: "16", "24" or "32f" (float; wav only; mp3 ignores it).
    clip: CLIP_MODES, or None for the default: "none" for float wav, "clamp" otherwise.
    mp3_bitrate: kbit/s (MP3_BITRATES). Checked when built: UserError for an invalid combination."""

    fmt: str = "wav"
    bits: str = "16"
    clip: str | None = None
    mp3_bitrate: int = 320

    def __post_init__(self) -> None:
        if self.fmt not in OUTPUT_FORMATS:
            raise UserError(
                f"unknown output format '{self.fmt}' (valid: {', '.join(OUTPUT_FORMATS)})"
            )
        if self.bits not in BITS:
            raise UserError(
                f"unknown {{bits}} '{self.bits}' (valid: {', '.join(BITS)})", names=_NAMES
            )
        if self.fmt == "flac" and self.bits == "32f":
            raise UserError(
                "flac holds no float samples; use {bits} 16 or 24 with flac, or wav for 32f",
                names=_NAMES,
            )
        if self.clip is not None and self.clip not in CLIP_MODES:
            raise UserError(
                f"unknown {{clip}} '{self.clip}' (valid: {', '.join(CLIP_MODES)})", names=_NAMES
            )
        if self.clip == "none" and not self.floats:
            raise UserError(
                "{clip} none keeps samples beyond full scale, which only float wav holds "
                "({bits} 32f); use {clip} clamp or rescale",
                names=_NAMES,
            )
        if self.mp3_bitrate not in MP3_BITRATES:
            raise UserError(
                f"{{mp3_bitrate}} must be one of {', '.join(map(str, MP3_BITRATES))} (kbit/s), "
                f"got {self.mp3_bitrate}",
                names=_NAMES,
            )

    @property
    def floats(self) -> bool:
        """True when the files hold float samples (values beyond full scale survive)."""
        return self.fmt == "wav" and self.bits == "32f"

    @property
    def clip_mode(self) -> str:
        return self.clip or ("none" if self.floats else "clamp")

    def writer(
        self, path: Path, sample_rate: int, n_channels: int, staging_dir: Path | None
    ) -> AtomicAudioWriter:
        return AtomicAudioWriter(
            path,
            sample_rate,
            n_channels,
            self.fmt,
            staging_dir=staging_dir,
            bits=self.bits,
            clip=self.clip_mode != "none",
            mp3_bitrate=self.mp3_bitrate,
        )


class StemFiles:
    """The output files of one input ({key: path}), written block by block and published together.

    write(key, block [m, n_channels]); finish() (rescale pass, encoding); commit() renames them all;
    abort() removes every partial. With a failure anywhere no output appears. staging_dir: where the
    partial files live (same file system; default: each output's folder, which must exist).
    """

    def __init__(
        self,
        paths: Mapping[str, Path],
        sample_rate: int,
        n_channels: int,
        settings: OutputSettings,
        staging_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.rate, self.n_channels, self.staging_dir = sample_rate, n_channels, staging_dir
        self.rescale = settings.clip_mode == "rescale"
        self.peak = 0.0
        self.gain = 1.0
        self.writers: dict[str, AtomicAudioWriter] = {}
        try:  # a failure here must remove the partials made so far
            for key, path in paths.items():
                self.writers[key] = (
                    AtomicAudioWriter(
                        path,
                        sample_rate,
                        n_channels,
                        "wav",
                        bits="32f",
                        clip=False,
                        staging_dir=staging_dir,
                    )
                    if self.rescale
                    else settings.writer(path, sample_rate, n_channels, staging_dir)
                )
        except BaseException:
            self.abort()
            raise

    def write(self, key: str, block: np.ndarray) -> None:
        if self.rescale and block.size:
            self.peak = max(self.peak, float(np.max(np.abs(block))))
        self.writers[key].write(block)

    @property
    def n_written(self) -> dict[str, int]:
        return {key: w.n_written for key, w in self.writers.items()}

    def finish(self) -> None:
        """Rescale (if asked) and close or encode every file, so `commit` only renames."""
        if self.rescale:
            self.gain = 1.0 / self.peak if self.peak > 1.0 else 1.0
            for key, staged in list(self.writers.items()):
                staged.finish()
                if self.gain == 1.0 and self.settings.floats:
                    continue
                final = self.settings.writer(
                    staged.path, self.rate, self.n_channels, self.staging_dir
                )
                self.writers[key] = final
                try:
                    _copy_scaled(staged.partial, final, self.gain)
                finally:
                    staged.abort()
        for w in self.writers.values():
            w.finish()

    def commit(self, overwrite: bool) -> dict[str, Path]:
        return {key: w.commit(overwrite=overwrite) for key, w in self.writers.items()}

    def abort(self) -> None:
        for w in self.writers.values():
            w.abort()

    def summary(self) -> str | None:
        """One line on clipping, or None when nothing was clamped or scaled."""
        if self.rescale and self.gain < 1.0:
            return (
                f"all outputs scaled by {self.gain:.4f} ({20 * math.log10(self.gain):.2f} dB) so the peak "
                f"({self.peak:.4f}) fits full scale"
            )
        clipped = {w.path.name: w.n_clipped for w in self.writers.values() if w.n_clipped}
        if not clipped:
            return None
        detail = ", ".join(f"{name} {n}" for name, n in clipped.items())
        return f"clamped {sum(clipped.values())} samples beyond full scale ({detail}); --clip rescale avoids it"


def _copy_scaled(source: Path, target: AtomicAudioWriter, gain: float) -> None:

    try:
        with open_soundfile(source) as f:
            while True:
                block = f.read(_BLOCK, dtype="float32", always_2d=True)
                if not block.shape[0]:
                    return
                target.write(block * np.float32(gain))
    except (RuntimeError, OSError) as exc:
        raise AudioError(f"cannot rescale '{target.path}': {exc}") from None


def check_targets(
    inputs: Iterable[Path], outputs: Iterable[Path], outdir: Path, force: bool
) -> None:
    """Refuse before any work: an output that is an input file, is not a file, or exists without force."""
    outputs = list(outputs)
    for path in inputs:
        if path.is_file():
            clobber = [str(p) for p in outputs if p.is_file() and os.path.samefile(p, path)]
            if clobber:
                raise AudioError(
                    f"output '{clobber[0]}' is the input file itself; choose another output directory"
                )
    not_files = [str(p) for p in outputs if p.exists() and not p.is_file()]
    if not_files:
        raise AudioError(f"output '{not_files[0]}' exists and is not a file")
    if not force:
        existing = [str(p) for p in outputs if p.exists()]
        if existing:
            raise AudioError(
                f"output '{literal(existing[0])}' exists; use {{force}} to overwrite",
                names={"force": "force=True"},
            )


def prepare_outdir(outdir: Path, outputs: Iterable[Path]) -> None:
    """Create OUTDIR (for the partial files); AudioError if a folder on the way to an output exists and is
    not a directory, or OUTDIR or an existing output folder is not writable."""
    outputs = list(outputs)
    for p in outputs:
        try:
            parts = p.relative_to(outdir).parts[:-1]
        except ValueError:
            parts = ()
        d = outdir
        for part in (None, *parts):
            d = d if part is None else d / part
            if d.exists() and not d.is_dir():
                raise AudioError(f"output path '{d}' exists and is not a directory")
    try:
        make_dirs(outdir)
    except OSError as exc:
        raise AudioError(f"cannot create output directory '{outdir}': {exc.strerror}") from None
    if not os.access(outdir, os.W_OK | os.X_OK):
        raise AudioError(f"output directory '{outdir}' is not writable")
    for folder in sorted({p.parent for p in outputs}):
        if folder != outdir and folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
            raise AudioError(f"output directory '{folder}' is not writable")

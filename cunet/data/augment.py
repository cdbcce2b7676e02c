"""Pitch- and tempo-shifted copies of multitracks, rendered once to a folder dataset.

Pitch shifting and time stretching (librosa's phase vocoder, then a soxr resample) are too slow to
run per training patch on a CPU, so they are rendered ahead of training: every track of a source
gets `n_variants` copies, each with one random pitch shift (whole semitones in
[-max_semitones, max_semitones], never 0) and one tempo factor in [1 - max_tempo, 1 + max_tempo],
applied alike to all of the track's stems so they stay in time and in tune with each other. The
copies form a folder dataset (`<out>/train/<track>~<variant>/<stem>.wav`, float32 wav) that
training reads as one more `--data` source, with its own weight and `valid=0`.

Only the training split of a source is rendered: validation tracks are never augmented.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import DataError
from ..io.resample import conform
from ..progress import progress_bar
from ..workers import bounded_workers, sigint_deferred, terminate_workers
from .sources import Track, track_key


@dataclass(frozen=True)
class Variant:
    """One pitch and tempo change: semitones (+ is higher) and tempo (> 1 is faster)."""

    semitones: int
    tempo: float

    def __post_init__(self) -> None:
        if not -12 <= self.semitones <= 12:
            raise DataError(f"pitch shift {self.semitones} semitones is outside [-12, 12]")
        if not 0.5 <= self.tempo <= 2.0:
            raise DataError(f"tempo factor {self.tempo} is outside [0.5, 2]")

    @property
    def label(self) -> str:
        """A folder-name suffix, e.g. 'p+2_t1.07'."""
        return f"p{self.semitones:+d}_t{self.tempo:.2f}"


def pitch_tempo(audio: np.ndarray, rate: int, variant: Variant) -> np.ndarray:
    """Shift the pitch by `variant.semitones` and the tempo by `variant.tempo`, in one stretch.

    audio: float32 [n_samples, n_channels] at `rate` Hz. Returns float32 [m, n_channels] with
    m = round(n_samples / tempo) (to within a sample or two). A pitch shift by s semitones is a stretch
    by p = 2^(-s/12) followed by resampling from rate / p to rate, so both changes share one phase
    vocoder pass: stretch by tempo * p, then resample. The phase vocoder loses a few dB of level (its
    frames overlap with incoherent phases), so the result is scaled back to the input's RMS.
    """
    import librosa

    ratio = 2.0 ** (-variant.semitones / 12.0)
    y = np.ascontiguousarray(np.asarray(audio, np.float32).T)
    stretch = variant.tempo * ratio
    if stretch != 1.0:
        y = librosa.effects.time_stretch(y, rate=stretch)
    out = conform(y.T, rate / ratio, rate) if variant.semitones else y.T
    rms_in, rms_out = (float(np.sqrt(np.mean(np.square(x)))) for x in (audio, out))
    if rms_out > 0:
        out = out * np.float32(rms_in / rms_out)
    return np.ascontiguousarray(out, dtype=np.float32)


def draw_variants(
    n_variants: int, seed: int | Sequence[int], max_semitones: int = 2, max_tempo: float = 0.12
) -> list[Variant]:
    """Up to `n_variants` seeded random variants, all different: distinct nonzero semitone shifts while
    they last; after that a shift repeats with another tempo, and a repeat of an earlier variant (the
    same shift and rounded tempo) is dropped rather than rendered twice into one folder."""
    if n_variants < 1:
        raise DataError(f"number of variants must be at least 1, got {n_variants}")
    if max_semitones < 1 or not 0 <= max_tempo < 0.5:
        raise DataError("max_semitones must be >= 1 and max_tempo in [0, 0.5)")
    rng = np.random.default_rng(seed)
    shifts = [s for s in range(-max_semitones, max_semitones + 1) if s]
    order = list(rng.permutation(shifts))
    variants = []
    for i in range(n_variants):
        semitones = int(order[i % len(order)])
        tempo = round(float(rng.uniform(1 - max_tempo, 1 + max_tempo)), 2)
        variants.append(Variant(semitones, tempo))
    return list(dict.fromkeys(variants))


def render_copies(track: Track, copies: Sequence[tuple[Variant, Path]]) -> None:
    """Write the track's stems changed by each variant into its folder. Each stem is decoded once for
    all the copies and held alone in memory; each folder is created whole or not at all."""
    tmps: list[Path] = []
    try:
        for _, folder in copies:
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmps.append(Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent)))
        for stem, read in track.stems.items():
            audio, rate = read()
            for (variant, _), tmp in zip(copies, tmps, strict=True):
                sf.write(tmp / f"{stem}.wav", pitch_tempo(audio, rate, variant), rate, "FLOAT")
        for tmp in tmps:
            for stem in track.silent:
                (tmp / f"{stem}.silent").touch()
        for (_, folder), tmp in zip(copies, tmps, strict=True):
            os.replace(tmp, folder)
    except OSError as exc:
        raise DataError(
            f"cannot write the augmented copies of '{track.name}' in '{copies[0][1].parent}': "
            f"{exc.strerror or exc}"
        ) from None
    finally:
        for tmp in tmps:
            shutil.rmtree(tmp, ignore_errors=True)


def render_augmented(
    tracks: Sequence[Track],
    out: Path,
    n_variants: int = 2,
    seed: int = 0,
    max_semitones: int = 2,
    max_tempo: float = 0.12,
    progress: bool = True,
    jobs: int = 1,
) -> list[Path]:
    """Render `n_variants` pitch/tempo copies of every track into the folder dataset `out/train`.

    Each track draws its own variants from (seed, track name); a track can have fewer than
    `n_variants` copies (see `draw_variants`). Copies already on disk are kept, so an interrupted run
    resumes. jobs: tracks rendered at once, each in its own process (the phase vocoder
    holds the GIL), at most one per CPU (`cunet.workers.bounded_workers`; 0: one per CPU).
    Returns the copies' folders, track by track.
    """
    if not tracks:
        raise DataError("no tracks to augment")
    folders: list[Path] = []
    work: list[tuple[Track, list[tuple[Variant, Path]]]] = []
    for track in tracks:
        name_seed = int(hashlib.sha1(track.name.encode()).hexdigest()[:8], 16)
        copies = [
            (variant, out / "train" / f"{track_key(track.name)}~{variant.label}")
            for variant in draw_variants(n_variants, [seed, name_seed], max_semitones, max_tempo)
        ]
        folders += [folder for _, folder in copies]
        todo = [(variant, folder) for variant, folder in copies if not folder.is_dir()]
        if todo:
            work.append((track, todo))
    bar = progress_bar(len(tracks), not progress, "augment", unit="track")
    bar.update(len(tracks) - len(work))
    workers = bounded_workers(jobs, len(work))[0]
    if workers > 1:
        pool = ProcessPoolExecutor(workers)
        try:
            with sigint_deferred():  # the workers start here, and never see Ctrl-C
                done = pool.map(render_copies, *zip(*work, strict=True))
            for _ in done:
                bar.update()
        except BaseException:
            terminate_workers(pool)  # Ctrl-C or an error: not the other tracks' renders first
            raise
        pool.shutdown()
    else:
        for track, todo in work:
            render_copies(track, todo)
            bar.update()
    bar.close()
    return folders

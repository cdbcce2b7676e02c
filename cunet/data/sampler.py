"""Seeded, augmented training patches drawn from cached STFTs.

An example is a mixture patch built from stems, with targets:
- remix (probability `remix_probability`): every instrument's stem comes from its own randomly
  drawn track and position (any source that holds the instrument);
- otherwise one track at one position, with the stems it holds. An instrument the track lacks is
  unknown (not silence): it gets no condition and no loss, unless the dataset marks it silent;
  stems the model has no instrument for (say a piano stem) sound in the mixture as interference.
Each stem gets a random gain, (stereo) a random channel swap and, with `freq_warp`, half the time a
pitch-like stretch of its frequency axis. Tracks are drawn in proportion to
their length times their source's weight, so every patch position is equally likely.

Modes: one condition per example (the paper's one-hot, optionally multi-hot, all-zero or
progressively scaled), a fixed target (plain U-Net), or `joint`: every instrument's target for the
same mixture, which the trainer runs as one group of conditions.

Arrays (model layout): magnitude float32 [n_bins, n_frames, n_channels]; targets
[n_targets, n_bins, n_frames, n_channels] with n_targets 1 (one condition) or n_instruments (joint);
weight [n_targets] is 1 where the target is known, 0 where it is not. With `with_complex` the
complex mixture and targets come as real and imaginary parts of the same layouts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np

from ..config import TrainConfig
from ..errors import DataError
from .cache import CachedTrack

X_KEYS = ("magnitude", "condition", "mixture_real", "mixture_imag")
Y_KEYS = ("target", "weight", "target_real", "target_imag")


def to_model_layout(spec: np.ndarray) -> np.ndarray:
    """[..., n_channels, n_frames, n_bins] -> [..., n_bins, n_frames, n_channels] (last three axes)."""
    return np.swapaxes(spec, -1, -3)


def warp_bins(spec: np.ndarray, factor: float) -> np.ndarray:
    """Stretch the frequency (last) axis of complex [..., n_bins] by `factor` (> 1 moves content up),
    by linear interpolation; content moved past the top bin is dropped, bins above the old top are 0."""
    n_bins = spec.shape[-1]
    source = np.arange(n_bins, dtype=np.float32) / np.float32(factor)
    low = np.minimum(source.astype(np.int64), n_bins - 1)
    high = np.minimum(low + 1, n_bins - 1)
    frac = (source - low).astype(np.float32)
    out = spec[..., low] * (1 - frac) + spec[..., high] * frac
    out[..., source > n_bins - 1] = 0
    return out.astype(np.complex64)


class PatchSampler:
    """Draws training batches; batch `index` is reproducible from (seed, index).

    tracks: cached tracks (any sources); instruments: the model's instruments, in order;
    fixed_target: index of the only target (plain U-Net); joint: all targets per mixture.
    """

    def __init__(
        self,
        tracks: Sequence[CachedTrack],
        n_frames: int,
        train: TrainConfig,
        instruments: Sequence[str],
        n_bins: int,
        n_channels: int,
        seed: int,
        fixed_target: int | None = None,
        joint: bool = False,
        with_complex: bool = False,
    ) -> None:
        if not tracks:
            raise DataError("no training tracks")
        self.tracks = list(tracks)
        self.n_frames, self.n_bins, self.n_channels = n_frames, n_bins, n_channels
        self.train = train
        self.instruments = tuple(instruments)
        self.seed = seed
        self.fixed_target = fixed_target
        self.joint = joint
        self.with_complex = with_complex
        weights = np.array(
            [t.weight * max(1, t.n_frames - n_frames + 1) for t in self.tracks], np.float64
        )
        self.pools = {}
        for inst in self.instruments:
            idx = np.array([i for i, t in enumerate(self.tracks) if inst in t.stems], np.int64)
            if idx.size:
                self.pools[inst] = (idx, weights[idx] / weights[idx].sum())
        # Instruments no track holds are unknown in every example: their conditions are not trained.
        self.missing = tuple(i for i in self.instruments if i not in self.pools)
        if not self.pools:
            raise DataError(
                f"no training track holds any of the instruments {list(self.instruments)}"
            )
        if fixed_target is not None:
            if self.instruments[fixed_target] in self.missing:
                raise DataError(
                    f"no training track holds a '{self.instruments[fixed_target]}' stem"
                )
            self.mix_pool = self.pools[self.instruments[fixed_target]]
        else:  # tracks holding none of the instruments (e.g. clips of another stem) would give empty examples
            idx = np.array(
                [i for i, t in enumerate(self.tracks) if set(t.stems) & set(self.instruments)],
                np.int64,
            )
            self.mix_pool = (idx, weights[idx] / weights[idx].sum())

    @property
    def n_instruments(self) -> int:
        return len(self.instruments)

    @property
    def n_targets(self) -> int:
        return self.n_instruments if self.joint else 1

    def _draw(
        self, rng: np.random.Generator, pool: tuple[np.ndarray, np.ndarray]
    ) -> tuple[CachedTrack, int]:
        track = self.tracks[int(rng.choice(pool[0], p=pool[1]))]
        return track, int(rng.integers(max(1, track.n_frames - self.n_frames + 1)))

    def _patch(self, track: CachedTrack, instrument: str, start: int) -> np.ndarray:
        """complex64 [n_channels, n_frames, n_bins]; zeros where the cache holds nothing."""
        out = np.zeros((self.n_channels, self.n_frames, self.n_bins), np.complex64)
        if instrument in track.stems:
            piece = np.asarray(
                track.load(instrument)[:, start : start + self.n_frames, : self.n_bins]
            )
            out[:, : piece.shape[1], : piece.shape[2]] = (
                piece  # a mono recording fills both channels
            )
        return out

    def _stems(self, rng: np.random.Generator) -> tuple[list[np.ndarray | None], list[np.ndarray]]:
        """Augmented complex stems per instrument (None where the instrument is unknown), and the
        track's other stems, which the model has no condition for: they sound in the mixture only."""
        parts: list[np.ndarray | None] = [None] * self.n_instruments
        extras: list[np.ndarray] = []
        if rng.random() < self.train.remix_probability:
            for i, inst in enumerate(self.instruments):
                if inst in self.pools:
                    track, start = self._draw(rng, self.pools[inst])
                    parts[i] = self._patch(track, inst, start)
        else:
            track, start = self._draw(rng, self.mix_pool)
            for i, inst in enumerate(self.instruments):
                if track.has(inst):
                    parts[i] = self._patch(track, inst, start)
            extras = [
                self._patch(track, s, start) for s in track.stems if s not in self.instruments
            ]
        augmented = [self._augment(rng, p) if p is not None else None for p in parts]
        return augmented, [self._augment(rng, e) for e in extras]

    def _augment(self, rng: np.random.Generator, stem: np.ndarray) -> np.ndarray:
        if self.train.freq_warp > 0 and rng.random() < 0.5:
            stem = warp_bins(stem, rng.uniform(1 - self.train.freq_warp, 1 + self.train.freq_warp))
        gain = np.float32(rng.uniform(*self.train.gain_range))
        if self.n_channels == 2 and rng.random() < self.train.channel_swap_probability:
            stem = stem[::-1]
        return stem * gain

    def _condition(self, rng: np.random.Generator, known: list[int]) -> np.ndarray:
        cond = np.zeros(self.n_instruments, np.float32)
        if self.fixed_target is not None:
            cond[self.fixed_target] = 1.0
            return cond
        u = rng.random()
        if u < self.train.zero_condition_probability:
            return cond
        if (
            u < self.train.zero_condition_probability + self.train.multi_hot_probability
            and len(known) > 1
        ):
            k = rng.integers(2, len(known) + 1)
            cond[rng.choice(known, size=k, replace=False)] = 1.0
        else:
            cond[known[rng.integers(len(known))]] = 1.0
        for i in np.flatnonzero(cond):
            if rng.random() < self.train.progressive_probability:
                cond[i] = rng.uniform(0.0, 1.0)
        return cond

    def example(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        parts, extras = self._stems(rng)
        zeros = np.zeros((self.n_channels, self.n_frames, self.n_bins), np.complex64)
        mix = sum((p for p in parts if p is not None), sum(extras, zeros))
        if self.joint:
            targets = np.stack([p if p is not None else zeros for p in parts])
            weight = np.array([p is not None for p in parts], np.float32)
            cond = None
        else:
            known = [i for i, p in enumerate(parts) if p is not None]
            cond = self._condition(rng, known)
            target = sum((parts[i] * cond[i] for i in np.flatnonzero(cond)), zeros)
            targets, weight = target[None], np.ones(1, np.float32)
        out = {
            "magnitude": to_model_layout(np.abs(mix)),
            "target": to_model_layout(np.abs(targets)),
            "weight": weight,
        }
        if cond is not None:
            out["condition"] = cond
        if self.with_complex:
            mix_l, tgt_l = to_model_layout(mix), to_model_layout(targets)
            out.update(
                mixture_real=mix_l.real,
                mixture_imag=mix_l.imag,
                target_real=tgt_l.real,
                target_imag=tgt_l.imag,
            )
        return out

    def keys(self) -> tuple[str, ...]:
        """Names of the arrays of a batch, in a fixed order."""
        keys = ["magnitude", "target", "weight"]
        if not self.joint:
            keys.append("condition")
        if self.with_complex:
            keys += ["mixture_real", "mixture_imag", "target_real", "target_imag"]
        return tuple(keys)

    def shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        """Shape of each array of a batch of `batch_size` mixtures."""
        mag = (batch_size, self.n_bins, self.n_frames, self.n_channels)
        tgt = (batch_size, self.n_targets, self.n_bins, self.n_frames, self.n_channels)
        shapes = {
            "magnitude": mag,
            "target": tgt,
            "weight": (batch_size, self.n_targets),
            "condition": (batch_size, self.n_instruments),
            "mixture_real": mag,
            "mixture_imag": mag,
            "target_real": tgt,
            "target_imag": tgt,
        }
        return {k: shapes[k] for k in self.keys()}

    def batch(self, index: int, batch_size: int) -> dict[str, np.ndarray]:
        """`batch_size` examples (mixtures), stacked: float32 arrays named by `keys()`."""
        rng = np.random.default_rng([self.seed, int(index)])
        examples = [self.example(rng) for _ in range(batch_size)]
        return {k: np.stack([e[k] for e in examples]).astype(np.float32) for k in self.keys()}


def validation_batches(
    tracks: Sequence[CachedTrack], sampler: PatchSampler, max_patches_per_track: int = 4
) -> dict[str, np.ndarray]:
    """Deterministic validation patches of the tracks' own mixes (no augmentation), as `sampler` lays
    batches out: every known instrument once per patch (or all targets together in joint mode)."""
    rows: list[dict[str, np.ndarray]] = []
    n_frames = sampler.n_frames
    for track in tracks:
        n_patches = max(1, min(max(1, track.n_frames // n_frames), max_patches_per_track))
        for start in np.linspace(0, max(0, track.n_frames - n_frames), num=n_patches).astype(int):
            parts = [
                sampler._patch(track, inst, int(start)) if track.has(inst) else None
                for inst in sampler.instruments
            ]
            extras = [
                sampler._patch(track, s, int(start))
                for s in track.stems
                if s not in sampler.instruments
            ]
            if sampler.joint:
                rows.append(_row(sampler, parts, extras, None))
                continue
            targets = (
                [sampler.fixed_target]
                if sampler.fixed_target is not None
                else [i for i, p in enumerate(parts) if p is not None]
            )
            for k in targets:
                if parts[k] is not None:
                    rows.append(_row(sampler, parts, extras, k))
    if not rows:
        raise DataError("no validation patches (no validation track holds a target instrument)")
    return {k: np.stack([r[k] for r in rows]).astype(np.float32) for k in sampler.keys()}


def _row(
    sampler: PatchSampler,
    parts: list[np.ndarray | None],
    extras: list[np.ndarray],
    target: int | None,
) -> dict[str, np.ndarray]:
    zeros = np.zeros((sampler.n_channels, sampler.n_frames, sampler.n_bins), np.complex64)
    mix = sum((p for p in parts if p is not None), sum(extras, zeros))
    if target is None:
        targets = np.stack([p if p is not None else zeros for p in parts])
        weight = np.array([p is not None for p in parts], np.float32)
    else:
        targets, weight = cast(np.ndarray, parts[target])[None], np.ones(1, np.float32)
    row = {
        "magnitude": to_model_layout(np.abs(mix)),
        "target": to_model_layout(np.abs(targets)),
        "weight": weight,
        "condition": np.eye(sampler.n_instruments, dtype=np.float32)[target or 0],
    }
    if sampler.with_complex:
        mix_l, tgt_l = to_model_layout(mix), to_model_layout(targets)
        row.update(
            mixture_real=mix_l.real,
            mixture_imag=mix_l.imag,
            target_real=tgt_l.real,
            target_imag=tgt_l.imag,
        )
    return row

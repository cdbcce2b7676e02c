"""A fast SDR measure on the validation tracks, computed at every epoch end to select checkpoints.

Every validation track is separated whole (all instruments, the model's own post-processing),
and scored like the SiSEC aggregate, only cheaper: SDR = 10 log10(|s|^2 / |s - s_hat|^2) per
1-second segment, computed on the STFT (a tight frame, so energies match the waveform's up to a
constant), median over segments, then median over tracks. Segments where the reference is silent
are skipped, as museval does. It tracks museval's BSSEval v4 SDR closely enough to rank checkpoints
and costs seconds per epoch instead of minutes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from ..config import Config
from ..data.cache import CachedTrack
from ..data.sampler import PatchSampler
from ..postprocess import ratio_masks

SILENCE = 1e-8  # reference energy (STFT units) under which a segment counts as silent


def segment_sdr(reference: np.ndarray, estimate: np.ndarray, segment: int) -> float:
    """Median over `segment`-frame segments of the SDR (dB) of complex [ch, F, bins] spectrograms."""
    n = max(1, reference.shape[1] // segment)

    def energy(s):
        return (np.abs(s) ** 2).sum(axis=(0, 2))[: n * segment].reshape(n, -1).sum(axis=1)

    signal, error = energy(reference), energy(reference - estimate)
    keep = signal > SILENCE
    if not keep.any():
        return math.nan
    return float(np.median(10 * np.log10(signal[keep] / np.maximum(error[keep], 1e-12))))


def separate_track_masks(masker: keras.Model, mixture: np.ndarray, config: Config) -> np.ndarray:
    """Masks of every instrument for a whole mixture complex [ch, F, n_bins] -> [n_inst, ch, F, n_bins]."""
    frames = mixture.shape[1]
    multiple = config.model.time_multiple
    padded = int(math.ceil(frames / multiple)) * multiple
    magnitude = np.transpose(np.abs(mixture), (2, 1, 0))[None]  # [1, n_bins, F, ch]
    magnitude = np.pad(magnitude, [(0, 0), (0, 0), (0, padded - frames), (0, 0)])
    if config.model.conditioned:
        n = len(config.model.instruments)
        feed = {
            "magnitude": np.repeat(magnitude, n, axis=0),
            "condition": np.eye(n, dtype=np.float32),
        }
    else:
        feed = {"magnitude": magnitude}
    masks = keras.ops.convert_to_numpy(masker(feed, training=False))[:, :, :frames]
    masks = np.transpose(masks, (0, 3, 2, 1))  # [n, ch, F, n_bins]
    if config.model.postprocess == "ratio":
        masks = ratio_masks(masks, axis=0)
    return masks


def validation_sdr(
    masker: keras.Model, tracks: Sequence[CachedTrack], config: Config
) -> dict[str, float]:
    """{"val_sdr": mean over instruments, "val_sdr_<instrument>": median over tracks} in dB."""
    a = config.audio
    names = config.model.outputs
    segment = max(1, round(a.sample_rate / a.hop_length))
    scores: dict[str, list[float]] = {n: [] for n in names}
    for track in tracks:
        mixture = track.mixture(a.n_bins, a.n_channels)
        masks = separate_track_masks(masker, mixture, config)
        for i, name in enumerate(names):
            if not track.has(name):
                continue
            reference = np.zeros_like(mixture)
            if name in track.stems:
                stored = track.load(name)
                reference[:, :, : stored.shape[2]] = stored[:, :, : a.n_bins]
            scores[name].append(segment_sdr(reference, masks[i] * mixture, segment))
    logs = {
        f"val_sdr_{n}": float(np.nanmedian(v)) if np.isfinite(v).any() else math.nan
        for n, v in scores.items()
    }
    finite = [v for v in logs.values() if np.isfinite(v)]
    logs["val_sdr"] = float(np.mean(finite)) if finite else math.nan
    return logs


class ValidationSDR(keras.callbacks.Callback):
    """Adds `validation_sdr` of the trained network to the epoch logs (list it before the callbacks
    that read them: checkpoints, learning-rate schedule, early stopping)."""

    def __init__(self, tracks: Sequence[CachedTrack], config: Config) -> None:
        super().__init__()
        self.tracks = list(tracks)
        self.config = config

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs.update(validation_sdr(self.model.masker, self.tracks, self.config))


def input_statistics(
    sampler: PatchSampler, n_batches: int = 16, batch_size: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean and standard deviation [n_bins] of log1p(mixture magnitude) over training batches
    (drawn from a batch range training never uses)."""
    values = np.concatenate(
        [np.log1p(sampler.batch(10**9 + k, batch_size)["magnitude"]) for k in range(n_batches)]
    )  # [N, n_bins, F, ch]
    return values.mean(axis=(0, 2, 3)), values.std(axis=(0, 2, 3))

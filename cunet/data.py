"""MUSDB18 data: on-disk caches of decoded stems and their STFTs, a seeded patch
sampler with augmentation, and tf.data pipelines for training and validation.

Cache layout under `cache_dir`:
    audio-sr{sample_rate}-ch{n_channels}/{track}.npy      float32 [n_instruments, n_samples, n_channels]
    stft-sr{sr}-ch{ch}-fft{n_fft}-hop{hop}-bins{n_bins}/{track}.npy
                                                           complex64 [n_instruments, n_channels, n_frames, n_bins]
Both are written once (atomically) and memory-mapped afterwards, so later
epochs and runs never decode mp4 again. The STFT is linear, so stems drawn
from different tracks are remixed directly in the STFT domain.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .config import AudioConfig, TrainConfig


def track_key(name: str) -> str:
    """A file-system-safe cache name for a track."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "track"


def audio_key(audio: AudioConfig) -> str:
    return f"audio-sr{audio.sample_rate}-ch{audio.n_channels}"


def stft_key(audio: AudioConfig) -> str:
    return (f"stft-sr{audio.sample_rate}-ch{audio.n_channels}-fft{audio.n_fft}"
            f"-hop{audio.hop_length}-bins{audio.n_bins}")


def open_musdb(root: str | os.PathLike, subsets: str = "train", split: str | None = "train",
               is_wav: bool = False) -> list:
    """The musdb tracks of one subset/split (musdb's own train/valid split)."""
    import musdb

    if not Path(root).is_dir():
        raise FileNotFoundError(f"MUSDB18 root '{root}' is not a directory")
    kwargs = {"root": str(root), "subsets": subsets, "is_wav": is_wav}
    if subsets == "train" and split is not None:
        kwargs["split"] = split
    return list(musdb.DB(**kwargs))


def conform_audio(audio: np.ndarray, rate: int, target: AudioConfig) -> np.ndarray:
    """Resample float audio [n_samples, n_channels] to the config's rate and channel count."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    if rate != target.sample_rate:
        import soxr

        audio = soxr.resample(audio, rate, target.sample_rate, quality="HQ").astype(np.float32)
    if target.n_channels == 1 and audio.shape[1] != 1:
        audio = audio.mean(axis=1, keepdims=True)
    elif target.n_channels == 2 and audio.shape[1] == 1:
        audio = np.repeat(audio, 2, axis=1)
    return np.ascontiguousarray(audio)


def _save_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, array)
    os.replace(tmp, path)


@dataclass(frozen=True)
class CachedTrack:
    """One track's cached STFT (memory-mapped on access)."""

    name: str
    stft_path: Path

    def load(self) -> np.ndarray:
        """complex64 [n_instruments, n_channels, n_frames, n_bins], memory-mapped."""
        return np.load(self.stft_path, mmap_mode="r")


def build_cache(tracks: Sequence, cache_dir: str | os.PathLike, audio: AudioConfig,
                instruments: Sequence[str], progress: bool = True) -> list[CachedTrack]:
    """Decode each musdb track once, then cache its stems' waveforms and STFTs.

    `tracks` are musdb Track objects (anything with `.name`, `.rate` and
    `.sources[instrument].audio`). Existing cache files are reused.
    """
    from tqdm import tqdm

    cache_dir = Path(cache_dir)
    audio_dir = cache_dir / audio_key(audio)
    stft_dir = cache_dir / stft_key(audio)
    stft_fn = None
    cached = []
    for track in tqdm(tracks, desc="caching tracks", disable=not progress, unit="track"):
        key = track_key(track.name)
        stft_path = stft_dir / f"{key}.npy"
        if not stft_path.exists():
            audio_path = audio_dir / f"{key}.npy"
            if audio_path.exists():
                stems = np.load(audio_path)
            else:
                stems = np.stack([conform_audio(track.sources[name].audio, track.rate, audio)
                                  for name in instruments])
                _save_atomic(audio_path, stems)
            if stft_fn is None:
                stft_fn = _stft_function(audio)
            spec = stft_fn(np.transpose(stems, (0, 2, 1)))  # [inst, ch, frames, bins]
            _save_atomic(stft_path, spec[..., :audio.n_bins].astype(np.complex64))
        cached.append(CachedTrack(track.name, stft_path))
    return cached


def _stft_function(audio: AudioConfig) -> Callable[[np.ndarray], np.ndarray]:
    import tensorflow as tf

    from .spectral import stft

    def run(waveform: np.ndarray) -> np.ndarray:
        return stft(tf.constant(waveform, tf.float32), audio.n_fft, audio.hop_length).numpy()

    return run


def _to_model_layout(spec: np.ndarray) -> np.ndarray:
    """Complex [n_channels, n_frames, n_bins] -> magnitude float32 [n_bins, n_frames, n_channels]."""
    return np.transpose(np.abs(spec), (2, 1, 0)).astype(np.float32)


class PatchSampler:
    """Draws augmented training batches from cached STFTs; batch `index` is reproducible.

    Each example: a target instrument (one-hot condition; optionally multi-hot
    or all-zero), stems remixed from different tracks with probability
    `remix_probability`, a random gain per stem, random channel swap per stem,
    and the paper's progressive scaling (condition value and target scaled by
    the same p ~ U(0, 1)).

    Returns magnitude [batch, n_bins, n_frames, n_channels] of the mixture,
    condition [batch, n_instruments] and target magnitude of the same shape
    as the mixture, all float32.
    """

    def __init__(self, tracks: Sequence[CachedTrack], n_frames: int, train: TrainConfig, n_instruments: int,
                 seed: int, fixed_target: int | None = None) -> None:
        if not tracks:
            raise ValueError("no training tracks")
        self.specs = [t.load() for t in tracks]
        self.n_frames = n_frames
        self.train = train
        self.n_instruments = n_instruments
        self.seed = seed
        self.fixed_target = fixed_target
        short = [t.name for t, s in zip(tracks, self.specs) if s.shape[2] < n_frames]
        if short:
            raise ValueError(f"tracks shorter than one patch of {n_frames} frames: {short}")

    def _condition(self, rng: np.random.Generator) -> np.ndarray:
        cond = np.zeros(self.n_instruments, np.float32)
        if self.fixed_target is not None:
            cond[self.fixed_target] = 1.0
            return cond
        u = rng.random()
        if u < self.train.zero_condition_probability:
            return cond
        if u < self.train.zero_condition_probability + self.train.multi_hot_probability:
            k = rng.integers(2, self.n_instruments + 1)
            cond[rng.choice(self.n_instruments, size=k, replace=False)] = 1.0
        else:
            cond[rng.integers(self.n_instruments)] = 1.0
        for i in np.flatnonzero(cond):
            if rng.random() < self.train.progressive_probability:
                cond[i] = rng.uniform(0.0, 1.0)
        return cond

    def example(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n_tracks = len(self.specs)
        remix = rng.random() < self.train.remix_probability
        base = rng.integers(n_tracks)
        mix = None
        parts = []
        for s in range(self.n_instruments):
            t = rng.integers(n_tracks) if remix else base
            spec = self.specs[t]
            if remix or s == 0:
                start = rng.integers(spec.shape[2] - self.n_frames + 1)
            stem = np.asarray(spec[s, :, start:start + self.n_frames, :])
            gain = rng.uniform(*self.train.gain_range)
            if stem.shape[0] == 2 and rng.random() < self.train.channel_swap_probability:
                stem = stem[::-1]
            stem = stem * np.float32(gain)
            parts.append(stem)
            mix = stem if mix is None else mix + stem
        cond = self._condition(rng)
        target = sum(parts[i] * cond[i] for i in np.flatnonzero(cond)) if cond.any() else np.zeros_like(mix)
        return _to_model_layout(mix), cond, _to_model_layout(target)

    def batch(self, index: int, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, int(index)])
        mags, conds, targets = zip(*(self.example(rng) for _ in range(batch_size)))
        return np.stack(mags), np.stack(conds), np.stack(targets)


def train_dataset(sampler: PatchSampler, batch_size: int, n_bins: int, n_channels: int,
                  conditioned: bool = True, first_index: int = 0):
    """Infinite tf.data pipeline of ({"magnitude", "condition"}, target) batches."""
    import tensorflow as tf

    n_frames, n_inst = sampler.n_frames, sampler.n_instruments

    def draw(index):
        return sampler.batch(int(index), batch_size)

    def to_tensors(index):
        mag, cond, target = tf.numpy_function(draw, [index], (tf.float32, tf.float32, tf.float32))
        mag = tf.ensure_shape(mag, (batch_size, n_bins, n_frames, n_channels))
        target = tf.ensure_shape(target, (batch_size, n_bins, n_frames, n_channels))
        cond = tf.ensure_shape(cond, (batch_size, n_inst))
        inputs = {"magnitude": mag, "condition": cond} if conditioned else {"magnitude": mag}
        return inputs, target

    ds = tf.data.Dataset.counter(first_index)
    ds = ds.map(to_tensors, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def validation_arrays(tracks: Sequence[CachedTrack], n_frames: int, n_instruments: int,
                      fixed_target: int | None = None, max_patches_per_track: int = 8
                      ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Deterministic validation patches: original mixes (sum of stems), no augmentation.

    Non-overlapping patches spread over each track, every instrument once
    (or only `fixed_target` for a standard U-Net).
    """
    mags, conds, targets = [], [], []
    targets_idx = [fixed_target] if fixed_target is not None else list(range(n_instruments))
    for track in tracks:
        spec = track.load()
        n_patches = spec.shape[2] // n_frames
        starts = np.linspace(0, spec.shape[2] - n_frames, num=min(n_patches, max_patches_per_track)).astype(int)
        for start in starts:
            stems = np.asarray(spec[:, :, start:start + n_frames, :])
            mix = _to_model_layout(stems.sum(axis=0))
            for k in targets_idx:
                cond = np.zeros(n_instruments, np.float32)
                cond[k] = 1.0
                mags.append(mix)
                conds.append(cond)
                targets.append(_to_model_layout(stems[k]))
    inputs = {"magnitude": np.stack(mags).astype(np.float32)}
    if fixed_target is None:
        inputs["condition"] = np.stack(conds)
    return inputs, np.stack(targets).astype(np.float32)


def split_track_names(tracks: Iterable) -> list[str]:
    return [t.name for t in tracks]

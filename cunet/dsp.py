"""The STFT of `cunet.nn.spectral` in NumPy, for inference without TensorFlow in the signal path.

Same conventions as `cunet.nn.spectral` (tf.signal), to float32 rounding: the signal is padded with
n_fft - hop_length zeros at both ends (the right end rounded up so frames tile it exactly), framed
with a periodic Hann window, no normalisation; the inverse uses tf.signal's
`inverse_stft_window_fn` weighting and overlap-add, so `istft(stft(x), n) == x` to float error.

Layout: waveforms [..., n_samples] float32; spectrograms [..., n_frames, n_fft // 2 + 1] complex64.
The FFTs are NumPy's (pocketfft; float32 since NumPy 2, float64 before): importing scipy.fft would add
about 0.3 s to every `separate` start, more than the STFT of a short song takes.
"""

from __future__ import annotations

import functools

import numpy as np


def pad_amounts(n_samples: int, n_fft: int, hop_length: int) -> tuple[int, int]:
    """(left, right) zero padding in samples of a signal of n_samples before framing."""
    left = n_fft - hop_length
    total = n_samples + 2 * left
    extra = (-(total - n_fft)) % hop_length
    return left, left + extra


def n_frames_for(n_samples: int, n_fft: int, hop_length: int) -> int:
    """Number of frames `stft` returns for n_samples samples."""
    left, right = pad_amounts(n_samples, n_fft, hop_length)
    return (n_samples + left + right - n_fft) // hop_length + 1


@functools.lru_cache(maxsize=8)
def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window float32 [n_fft], computed in float32 as tf.signal.hann_window does."""
    count = np.arange(n_fft, dtype=np.float32)
    window = np.float32(0.5) - np.float32(0.5) * np.cos(
        np.float32(2 * np.pi) * count / np.float32(n_fft)
    )
    window.setflags(write=False)
    return window


@functools.lru_cache(maxsize=8)
def inverse_window(n_fft: int, hop_length: int) -> np.ndarray:
    """float32 [n_fft]: tf.signal.inverse_stft_window_fn(hop_length, hann_window)(n_fft)."""
    forward = hann_window(n_fft)
    overlaps = -(-n_fft // hop_length)
    denom = np.pad(forward * forward, (0, overlaps * hop_length - n_fft)).reshape(
        overlaps, hop_length
    )
    denom = np.tile(denom.sum(axis=0, keepdims=True), (overlaps, 1)).reshape(-1)[:n_fft]
    window = (forward / denom).astype(np.float32)
    window.setflags(write=False)
    return window


def stft(waveform: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """Complex STFT: float32 [..., n_samples] -> complex64 [..., n_frames, n_fft // 2 + 1]."""
    x = np.asarray(waveform, np.float32)
    left, right = pad_amounts(x.shape[-1], n_fft, hop_length)
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(left, right)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[..., ::hop_length, :]
    return np.fft.rfft(frames * hann_window(n_fft), n=n_fft, axis=-1).astype(
        np.complex64, copy=False
    )


def istft(spectrogram: np.ndarray, n_samples: int, n_fft: int, hop_length: int) -> np.ndarray:
    """Inverse of `stft`: complex64 [..., n_frames, n_fft // 2 + 1] -> float32 [..., n_samples]."""
    spec = np.asarray(spectrogram, np.complex64)
    frames = np.fft.irfft(spec, n=n_fft, axis=-1).astype(np.float32, copy=False)
    frames *= inverse_window(n_fft, hop_length)
    left = n_fft - hop_length
    return overlap_add(frames, hop_length)[..., left : left + n_samples]


def overlap_add(frames: np.ndarray, hop_length: int) -> np.ndarray:
    """Sum frames [..., n_frames, frame_length] placed hop_length apart -> [..., (n_frames - 1) * hop + length]."""
    *lead, n_frames, length = frames.shape
    k = -(-length // hop_length)  # hop-sized segments per frame
    if k * hop_length != length:
        frames = np.pad(frames, [(0, 0)] * len(lead) + [(0, 0), (0, k * hop_length - length)])
    segments = frames.reshape(*lead, n_frames, k, hop_length)
    out = np.zeros((*lead, n_frames + k - 1, hop_length), frames.dtype)
    for j in range(k):
        out[..., j : j + n_frames, :] += segments[..., j, :]
    return out.reshape(*lead, (n_frames + k - 1) * hop_length)[
        ..., : (n_frames - 1) * hop_length + length
    ]


def expand_mask_bins(mask: np.ndarray, n_fft: int) -> np.ndarray:
    """Extend a mask [..., n_bins] to all n_fft // 2 + 1 bins by repeating its top bin (as `cunet.nn.spectral`)."""
    n_missing = n_fft // 2 + 1 - mask.shape[-1]
    if n_missing <= 0:
        return mask
    top = np.broadcast_to(mask[..., -1:], (*mask.shape[:-1], n_missing))
    return np.concatenate([mask, top], axis=-1)


def apply_mask(spectrogram: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """spectrogram complex64 [..., n_frames, n_fft // 2 + 1] times mask float32 [..., n_frames, n_bins]
    (n_bins <= n_fft // 2 + 1; the bins above reuse the top one, as `expand_mask_bins`), without
    building the expanded mask. Returns complex64 of the spectrogram's shape."""
    n_bins = mask.shape[-1]
    out = np.empty(spectrogram.shape, np.complex64)
    np.multiply(spectrogram[..., :n_bins], mask, out=out[..., :n_bins])
    np.multiply(spectrogram[..., n_bins:], mask[..., -1:], out=out[..., n_bins:])
    return out

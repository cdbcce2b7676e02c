"""The STFT of `cunet.nn.spectral` in NumPy, for inference without TensorFlow in the signal path.

Same conventions as `cunet.nn.spectral` (tf.signal), to float32 rounding: the signal is padded with
n_fft - hop_length zeros at both ends (the right end rounded up so frames tile it exactly), framed
with a periodic Hann window, no normalisation; the inverse uses tf.signal's
`inverse_stft_window_fn` weighting and overlap-add, so `istft(stft(x), n) == x` to float error.

Layout: waveforms [..., n_samples] float32; spectrograms [..., n_frames, n_fft // 2 + 1] complex64.
The FFTs are NumPy's (pocketfft; float32 since NumPy 2, float64 before). `scipy.fft` was measured
against them on the 2-core machine (CPU seconds for 2 x 1024 frames of 2048 in float32): forward 0.010
against 0.033, inverse 0.0095 against 0.0106, but `import scipy.fft` costs 0.5-1 s, more than it saves
on a 3-minute song (17 forward transforms) and most of a short file's run.
Both transforms work BLOCK_FRAMES frames at a time, so their temporaries stay in cache and no
full-size windowed, masked or framed copy of a chunk is ever made.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

BLOCK_FRAMES = 128  # frames per block of the transforms (1 MiB of float32 frames at n_fft 2048)


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
    """Complex STFT: float32 [..., n_samples] -> complex64 [..., n_frames, n_fft // 2 + 1].

    The waveform may be any view (e.g. a transposed [n_samples, ch] chunk): it is copied once, into the
    padded signal; frames are windowed and transformed BLOCK_FRAMES at a time, so the windowed copy
    of every frame is never held whole."""
    x = np.asarray(waveform)
    n = x.shape[-1]
    left, right = pad_amounts(n, n_fft, hop_length)
    padded = np.empty((*x.shape[:-1], left + n + right), np.float32)
    padded[..., :left] = 0.0
    padded[..., left + n :] = 0.0
    padded[..., left : left + n] = x
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[..., ::hop_length, :]
    n_frames = frames.shape[-2]
    window = hann_window(n_fft)
    spec = np.empty((*x.shape[:-1], n_frames, n_fft // 2 + 1), np.complex64)
    block = np.empty((*x.shape[:-1], min(BLOCK_FRAMES, n_frames), n_fft), np.float32)
    for f0 in range(0, n_frames, BLOCK_FRAMES):
        f1 = min(f0 + BLOCK_FRAMES, n_frames)
        windowed = np.multiply(frames[..., f0:f1, :], window, out=block[..., : f1 - f0, :])
        spec[..., f0:f1, :] = np.fft.rfft(windowed, n=n_fft, axis=-1)
    return spec


MaskSource = Callable[[slice], np.ndarray]


def istft(
    spectrogram: np.ndarray,
    n_samples: int,
    n_fft: int,
    hop_length: int,
    mask: np.ndarray | MaskSource | None = None,
) -> np.ndarray:
    """Inverse of `stft`: complex64 [..., n_frames, n_fft // 2 + 1] -> float32 [..., n_samples].

    mask: None, or what the spectrogram is multiplied by first, fused with the transform: float32
    [..., n_frames, n_bins] (any view; n_bins <= n_fft // 2 + 1, the bins above reuse the top one, as
    `expand_mask_bins`), or a function of a slice of frames returning that slice of such a mask (so a
    mask computed from others is never built whole). Frames are masked, transformed, windowed and
    overlap-added in place BLOCK_FRAMES at a time: no full-size masked spectrogram or frame array.
    """
    spec = np.asarray(spectrogram)
    *lead, n_frames, n_freq = spec.shape
    k = -(-n_fft // hop_length)  # hop-sized segments per frame
    out = np.zeros((*lead, (n_frames + k - 1) * hop_length), np.float32)
    window = inverse_window(n_fft, hop_length)
    masked = np.empty((*lead, min(BLOCK_FRAMES, n_frames), n_freq), np.complex64)
    for f0 in range(0, n_frames, BLOCK_FRAMES):
        f1 = min(f0 + BLOCK_FRAMES, n_frames)
        part = spec[..., f0:f1, :]
        if mask is not None:
            m = mask(slice(f0, f1)) if callable(mask) else mask[..., f0:f1, :]
            n_bins = m.shape[-1]
            target = masked[..., : f1 - f0, :]
            np.multiply(part[..., :n_bins], m, out=target[..., :n_bins])
            np.multiply(part[..., n_bins:], m[..., -1:], out=target[..., n_bins:])
            part = target
        frames = np.fft.irfft(part, n=n_fft, axis=-1)
        frames *= window
        for j in range(k):  # segment j of frame f lands at hop (f + j)
            width = min(hop_length, n_fft - j * hop_length)
            dest = out[..., (f0 + j) * hop_length : (f1 + j) * hop_length]
            dest = dest.reshape(*lead, f1 - f0, hop_length)[..., :width]
            dest += frames[..., j * hop_length : j * hop_length + width]
    left = n_fft - hop_length
    return out[..., left : left + n_samples]


def overlap_add(frames: np.ndarray, hop_length: int) -> np.ndarray:
    """Sum frames [..., n_frames, frame_length] placed hop_length apart -> [..., (n_frames - 1) * hop + length]."""
    *lead, n_frames, length = frames.shape
    k = -(-length // hop_length)  # hop-sized segments per frame
    out = np.zeros((*lead, (n_frames + k - 1) * hop_length), frames.dtype)
    for j in range(k):
        width = min(hop_length, length - j * hop_length)
        dest = out[..., j * hop_length : (n_frames + j) * hop_length]
        dest = dest.reshape(*lead, n_frames, hop_length)[..., :width]
        dest += frames[..., j * hop_length : j * hop_length + width]
    return out[..., : (n_frames - 1) * hop_length + length]


def expand_mask_bins(mask: np.ndarray, n_fft: int) -> np.ndarray:
    """Extend a mask [..., n_bins] to all n_fft // 2 + 1 bins by repeating its top bin (as `cunet.nn.spectral`)."""
    n_missing = n_fft // 2 + 1 - mask.shape[-1]
    if n_missing <= 0:
        return mask
    top = np.broadcast_to(mask[..., -1:], (*mask.shape[:-1], n_missing))
    return np.concatenate([mask, top], axis=-1)

"""cunet.dsp reproduces cunet.nn.spectral (tf.signal) in NumPy: same frames, same spectra, exact inverse."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from cunet import dsp
from cunet.nn import spectral


@pytest.mark.parametrize("n_fft,hop", [(2048, 512), (256, 128), (1024, 256), (1000, 300)])
@pytest.mark.parametrize("n_samples", [1, 255, 1000, 22050])
def test_stft_matches_tf_signal(n_fft: int, hop: int, n_samples: int) -> None:
    x = np.random.default_rng(n_samples).standard_normal((2, 3, n_samples)).astype(np.float32)
    want = spectral.stft(tf.constant(x), n_fft, hop).numpy()
    got = dsp.stft(x, n_fft, hop)
    assert (
        got.shape == want.shape == (2, 3, dsp.n_frames_for(n_samples, n_fft, hop), n_fft // 2 + 1)
    )
    assert got.dtype == np.complex64
    assert dsp.n_frames_for(n_samples, n_fft, hop) == spectral.n_frames_for(n_samples, n_fft, hop)
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())
    # The inverse of the same spectrogram agrees with tf.signal's, and inverts exactly.
    y_tf = spectral.istft(tf.constant(want), n_samples, n_fft, hop).numpy()
    np.testing.assert_allclose(dsp.istft(want, n_samples, n_fft, hop), y_tf, atol=1e-5)
    np.testing.assert_allclose(dsp.istft(got, n_samples, n_fft, hop), x, atol=1e-5)


def test_windows_match_tf_signal() -> None:
    np.testing.assert_allclose(
        dsp.hann_window(2048), tf.signal.hann_window(2048).numpy(), atol=1e-7
    )
    inverse = tf.signal.inverse_stft_window_fn(512, forward_window_fn=tf.signal.hann_window)(
        2048, tf.float32
    )
    np.testing.assert_allclose(dsp.inverse_window(2048, 512), inverse.numpy(), atol=1e-7)


@pytest.mark.parametrize("length,hop", [(8, 4), (10, 4), (5, 5), (7, 3)])
def test_overlap_add_sums_shifted_frames(length: int, hop: int) -> None:
    frames = np.random.default_rng(0).standard_normal((2, 5, length)).astype(np.float32)
    want = np.zeros((2, 4 * hop + length), np.float32)
    for k in range(5):
        want[:, k * hop : k * hop + length] += frames[:, k]
    np.testing.assert_allclose(dsp.overlap_add(frames, hop), want, atol=1e-6)
    np.testing.assert_allclose(
        dsp.overlap_add(frames, hop), tf.signal.overlap_and_add(frames, hop).numpy(), atol=1e-6
    )


def test_expand_mask_bins_repeats_top_bin() -> None:
    mask = np.arange(16, dtype=np.float32).reshape(2, 8)
    out = dsp.expand_mask_bins(mask, n_fft=16)
    assert out.shape == (2, 9) and (out[:, -1] == out[:, -2]).all() and (out[:, :8] == mask).all()
    np.testing.assert_array_equal(out, spectral.expand_mask_bins(tf.constant(mask), 16).numpy())
    full = np.zeros((1, 9), np.float32)
    assert dsp.expand_mask_bins(full, n_fft=16) is full


@pytest.mark.parametrize("n_frames", [1, 5, dsp.BLOCK_FRAMES, dsp.BLOCK_FRAMES * 2 + 3])
@pytest.mark.parametrize("n_fft,hop", [(16, 4), (16, 5)])
def test_istft_with_a_mask_equals_the_expanded_mask_times_the_spectrogram(
    n_frames: int, n_fft: int, hop: int
) -> None:
    """The fused path (mask applied block by block inside the inverse) against the plain one."""
    rng = np.random.default_rng(5)
    n_freq = n_fft // 2 + 1
    spec = (
        rng.standard_normal((2, n_frames, n_freq)) + 1j * rng.standard_normal((2, n_frames, n_freq))
    ).astype(np.complex64)
    # a strided view, n_fft // 2 of the n_freq bins
    mask = rng.uniform(0, 1, (2, n_fft // 2, n_frames)).astype(np.float32).transpose(0, 2, 1)
    n_samples = (n_frames - 1) * hop
    want = dsp.istft(dsp.expand_mask_bins(mask, n_fft) * spec, n_samples, n_fft, hop)
    frames = np.fft.irfft(dsp.expand_mask_bins(mask, n_fft) * spec, n_fft).astype(np.float32)
    plain = dsp.overlap_add(frames * dsp.inverse_window(n_fft, hop), hop)
    left = n_fft - hop
    np.testing.assert_allclose(want, plain[..., left : left + n_samples], atol=1e-6)
    np.testing.assert_allclose(dsp.istft(spec, n_samples, n_fft, hop, mask=mask), want, atol=1e-6)
    by_block = dsp.istft(spec, n_samples, n_fft, hop, mask=lambda f: mask[:, f])
    np.testing.assert_allclose(by_block, want, atol=1e-6)

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from cunet.nn.spectral import expand_mask_bins, istft, n_frames_for, stft


@pytest.mark.parametrize("n_fft,hop", [(2048, 512), (1024, 256), (256, 128)])
@pytest.mark.parametrize("n_samples", [1, 255, 1000, 44100])
def test_stft_istft_reconstruct_every_sample(n_fft, hop, n_samples):
    x = np.random.default_rng(0).standard_normal((2, n_samples)).astype("float32")
    spec = stft(tf.constant(x), n_fft, hop)
    assert spec.shape[-1] == n_fft // 2 + 1
    assert spec.shape[-2] == n_frames_for(n_samples, n_fft, hop)
    y = istft(spec, n_samples, n_fft, hop).numpy()
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1e-4)


def test_expand_mask_bins_repeats_top_bin():
    mask = tf.constant(np.arange(8, dtype="float32").reshape(1, 8))
    out = expand_mask_bins(mask, n_fft=16).numpy()
    assert out.shape == (1, 9)
    assert out[0, -1] == 7 and out[0, -2] == 7
    assert expand_mask_bins(tf.zeros((1, 9)), n_fft=16).shape == (1, 9)

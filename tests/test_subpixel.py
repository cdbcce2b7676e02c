"""Sub-pixel rewrites of transposed convolutions: the same outputs as Keras' Conv2DTranspose."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cunet.export.subpixel import (
    SubPixelConvTranspose,
    subpixel_kernel,
    with_subpixel_deconvolutions,
)


@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize("stride", [2, 3])
def test_same_outputs_as_conv2d_transpose(kernel: int, stride: int) -> None:
    keras.utils.set_random_seed(kernel * 10 + stride)
    inp = keras.Input((None, None, 3))
    layer = keras.layers.Conv2DTranspose(
        4,
        kernel,
        strides=stride,
        padding="same",
        activation="sigmoid",
        bias_initializer="random_normal",
    )
    model = keras.Model(inp, layer(inp))
    fast = with_subpixel_deconvolutions(model)
    assert isinstance(fast.layers[-1], SubPixelConvTranspose) and fast.layers[-1].n_out == 4
    x = np.random.default_rng(kernel).standard_normal((2, 13, 10, 3)).astype(np.float32)
    want, got = model(x).numpy(), fast(x).numpy()
    assert got.shape == want.shape == (2, 13 * stride, 10 * stride, 4)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_kernel_taps_cover_every_weight_once() -> None:
    weights = np.arange(5 * 5 * 2 * 3, dtype=np.float32).reshape(5, 5, 2, 3) + 1
    sub, lo, hi = subpixel_kernel(weights, 2)
    assert (lo, hi) == (-1, 1) and sub.shape == (3, 3, 3, 4 * 2)
    assert sorted(sub[sub != 0].tolist()) == sorted(weights.ravel().tolist())


def test_the_mask_network_keeps_its_masks(tiny_separator) -> None:
    from cunet.nn.models import mask_model

    masker = mask_model(tiny_separator.engine.model)
    fast = with_subpixel_deconvolutions(masker)
    assert not [layer for layer in fast.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert len([layer for layer in fast.layers if isinstance(layer, SubPixelConvTranspose)]) == 6
    a = tiny_separator.audio
    mag = (
        np.random.default_rng(0).uniform(0, 2, (3, a.n_bins, 128, a.n_channels)).astype(np.float32)
    )
    cond = np.eye(4, dtype=np.float32)[[0, 1, 3]]
    inputs = {"magnitude": mag, "condition": cond}
    np.testing.assert_allclose(
        fast(inputs, training=False).numpy(), masker(inputs, training=False).numpy(), atol=1e-5
    )


def test_unsupported_layers_are_refused() -> None:
    layer = keras.layers.Conv2DTranspose(2, 3, strides=2, padding="valid")
    layer.build((None, 8, 8, 1))
    with pytest.raises(ValueError, match="not a square"):
        SubPixelConvTranspose(layer)

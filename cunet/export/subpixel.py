"""Transposed convolutions rewritten as sub-pixel convolutions, for the exported (LiteRT, ONNX) graphs.

A `Conv2DTranspose` with stride s and "same" padding computes, for each of the s x s output phases
(py, px), an ordinary stride-1 convolution of its input with a subset of its taps. Stacking the
phases' kernels as output channels gives one stride-1 convolution with s*s*C_out channels, and
`depth_to_space(s)` (pixel shuffle) interleaves them back:

    conv_transpose(x, W, s)[s*m + p] == depth_to_space(conv(x, W_sub))[s*m + p]   (per axis)

with W_sub[d - lo, ..., (py*s + px)*C_out + o] = W[py + pad - s*d, px + pad - s*d', o, :] for the
input offsets d = lo..hi that reach a valid tap (pad = max(k - s, 0) // 2, TensorFlow's "same").
The result is the same to float rounding (1e-6), and LiteRT's XNNPACK runs it several times faster
and with less scratch memory than its TRANSPOSE_CONV. Training and the Keras engine keep
the original layers; `with_subpixel_deconvolutions` makes an inference copy that shares all other
weights. Feature maps are [batch, n_bins, n_frames, channels] (channels last).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from ..tflog import import_tensorflow


def subpixel_kernel(kernel: np.ndarray, stride: int) -> tuple[np.ndarray, int, int]:
    """(W_sub, lo, hi) for a Conv2DTranspose kernel [k, k, C_out, C_in] with "same" padding.

    W_sub: float [taps, taps, C_in, stride*stride*C_out] with taps = hi - lo + 1; the stride-1
    convolution reads input offsets lo..hi (lo <= 0 <= hi) around each position.
    """
    k, k2, c_out, c_in = kernel.shape
    if k != k2:
        raise ValueError(f"square kernels only, got {kernel.shape[:2]}")
    pad = max(k - stride, 0) // 2
    lo = min(-((k - 1 - p - pad) // stride) for p in range(stride))  # ceil((p + pad - k + 1) / s)
    hi = max((p + pad) // stride for p in range(stride))
    taps = hi - lo + 1
    out = np.zeros((taps, taps, c_in, stride * stride * c_out), kernel.dtype)
    for py in range(stride):
        for px in range(stride):
            phase = (py * stride + px) * c_out
            for dy in range(lo, hi + 1):
                ky = py + pad - stride * dy
                for dx in range(lo, hi + 1):
                    kx = px + pad - stride * dx
                    if 0 <= ky < k and 0 <= kx < k:
                        out[dy - lo, dx - lo, :, phase : phase + c_out] = kernel[ky, kx].T
    return out, lo, hi


class SubPixelConvTranspose(keras.layers.Layer):
    """Inference-only stand-in for a stride-s "same" `Conv2DTranspose` (see the module docstring).

    Built from the layer it replaces (weights copied as constants); not meant to be saved.
    Input [batch, H, W, C_in] -> [batch, s*H, s*W, C_out], the replaced layer's activation applied.
    """

    def __init__(self, source: keras.layers.Conv2DTranspose, **kwargs: Any) -> None:
        super().__init__(name=f"{source.name}_subpixel", **kwargs)
        strides, kernel_size = tuple(source.strides), tuple(source.kernel_size)
        if (
            source.padding != "same"
            or strides[0] != strides[1]
            or kernel_size[0] != kernel_size[1]
            or tuple(source.dilation_rate) != (1, 1)
            or source.data_format != "channels_last"
        ):
            raise ValueError(
                f"layer '{source.name}' is not a square, stride-s, 'same', channels-last "
                "Conv2DTranspose"
            )
        weights = source.get_weights()
        self.stride = int(strides[0])
        self.kernel_value, self.lo, self.hi = subpixel_kernel(
            np.asarray(weights[0], np.float32), self.stride
        )
        bias = (
            np.asarray(weights[1], np.float32)
            if source.use_bias
            else np.zeros(weights[0].shape[2], np.float32)
        )
        self.bias_value = np.tile(bias, self.stride * self.stride)
        self.n_out = int(weights[0].shape[2])
        self.activation = source.activation

    def call(self, x: Any) -> Any:
        tf = import_tensorflow()
        kernel = tf.constant(self.kernel_value)
        if -self.lo == self.hi:  # symmetric reach: "SAME" pads exactly lo..hi
            y = tf.nn.conv2d(x, kernel, 1, "SAME")
        else:
            y = tf.nn.conv2d(
                tf.pad(x, [[0, 0], [-self.lo, self.hi], [-self.lo, self.hi], [0, 0]]),
                kernel,
                1,
                "VALID",
            )
        return self.activation(tf.nn.depth_to_space(y + tf.constant(self.bias_value), self.stride))

    def compute_output_shape(self, input_shape: Any) -> tuple:
        def grow(d: int | None) -> int | None:
            return None if d is None else d * self.stride

        return (input_shape[0], grow(input_shape[1]), grow(input_shape[2]), self.n_out)


def with_subpixel_deconvolutions(model: keras.Model) -> keras.Model:
    """A functional copy of `model` (same inputs and outputs) whose `Conv2DTranspose` layers are
    `SubPixelConvTranspose`; every other layer is shared, weights included. For inference exports."""

    def swap(layer: keras.layers.Layer) -> keras.layers.Layer:
        return (
            SubPixelConvTranspose(layer)
            if isinstance(layer, keras.layers.Conv2DTranspose)
            else layer
        )

    return keras.models.clone_model(model, clone_function=swap)

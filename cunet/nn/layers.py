"""Serializable Keras layers of the C-U-Net: FiLM, GPoCM, TDF, input scaling and the control networks.

Shapes follow Keras' channels-last layout: feature maps are
[batch, n_bins, n_frames, n_filters]; conditions are [batch, n_instruments].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from ..config import FILM_TYPES

PACKAGE = "cunet"


@keras.saving.register_keras_serializable(package=PACKAGE)
class FiLM(keras.layers.Layer):
    """Feature-wise linear modulation: `gamma * x + beta`.

    Inputs: [x, gammas, betas] with x [batch, n_bins, n_frames, n_filters] and
    gammas/betas [batch, n_params] holding the parameters of every encoder block;
    this layer reads its own slice starting at `offset`.

    film_type "simple": one gamma and one beta for the whole map (1 value).
    film_type "complex": one gamma and one beta per channel (n_filters values).
    """

    def __init__(self, film_type: str, offset: int, n_filters: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if film_type not in ("simple", "complex"):
            raise ValueError(f"film_type must be 'simple' or 'complex', got {film_type!r}")
        self.film_type = film_type
        self.offset = int(offset)
        self.n_filters = int(n_filters)

    @property
    def n_params(self) -> int:
        return film_widths(self.film_type, self.n_filters)[0]

    def call(self, inputs: Sequence[Any]) -> Any:
        x, gammas, betas = inputs
        gamma = gammas[:, self.offset : self.offset + self.n_params]
        beta = betas[:, self.offset : self.offset + self.n_params]
        gamma = ops.reshape(gamma, (-1, 1, 1, self.n_params))
        beta = ops.reshape(beta, (-1, 1, 1, self.n_params))
        return x * gamma + beta

    def compute_output_shape(self, input_shape: Sequence[Any]) -> Any:
        return input_shape[0]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "film_type": self.film_type,
            "offset": self.offset,
            "n_filters": self.n_filters,
        }


def film_widths(film_type: str, n_filters: int) -> tuple[int, int]:
    """(gammas, betas) that the modulation of one block of `n_filters` channels reads from the control
    network: simple 1 and 1, complex n and n, gpocm n*n (a channel-mixing matrix) and n."""
    if film_type == "simple":
        return 1, 1
    if film_type == "complex":
        return n_filters, n_filters
    if film_type == "gpocm":
        return n_filters * n_filters, n_filters
    raise ValueError(f"film_type must be one of {list(FILM_TYPES)}, got {film_type!r}")


def film_param_count(film_type: str, filters: Sequence[int]) -> tuple[int, int]:
    """Total (gammas, betas) for modulation layers on blocks of these widths."""
    widths = [film_widths(film_type, f) for f in filters]
    return sum(g for g, _ in widths), sum(b for _, b in widths)


@keras.saving.register_keras_serializable(package=PACKAGE)
class GPoCM(keras.layers.Layer):
    """Gated point-wise convolutional modulation (Choi et al., "LaSAFT", ICASSP 2021):
    `x * sigmoid(x @ W + b)`, a 1x1 convolution whose weights the condition sets, used as a gate.

    Inputs: [x, gammas, betas] with x [batch, n_bins, n_frames, n_filters]; W [n_filters, n_filters]
    (input channel first, row-major) is gammas[:, gamma_offset : gamma_offset + n_filters**2] and
    b [n_filters] is betas[:, beta_offset : beta_offset + n_filters]. Output: x's shape. Unlike FiLM,
    every channel's gate sees every channel of the same time-frequency point.
    """

    def __init__(self, gamma_offset: int, beta_offset: int, n_filters: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gamma_offset = int(gamma_offset)
        self.beta_offset = int(beta_offset)
        self.n_filters = int(n_filters)

    def call(self, inputs: Sequence[Any]) -> Any:
        x, gammas, betas = inputs
        n = self.n_filters
        w = ops.reshape(gammas[:, self.gamma_offset : self.gamma_offset + n * n], (-1, n, n))
        b = ops.reshape(betas[:, self.beta_offset : self.beta_offset + n], (-1, 1, n))
        shape = ops.shape(x)
        points = ops.reshape(x, (shape[0], -1, n))  # [batch, bins * frames, n]: one batched matmul
        gate = ops.sigmoid(ops.matmul(points, w) + b)
        return ops.reshape(points * gate, shape)

    def compute_output_shape(self, input_shape: Sequence[Any]) -> Any:
        return input_shape[0]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "gamma_offset": self.gamma_offset,
            "beta_offset": self.beta_offset,
            "n_filters": self.n_filters,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class TDF(keras.layers.Layer):
    """Time-distributed fully connected block across frequency, added residually (the TDF block of
    Choi et al., "LaSAFT", ICASSP 2021).

    Input and output [batch, n_bins, n_frames, n_filters]. For every frame and channel, the n_bins
    values pass through Dense(hidden) -> BN -> ReLU -> Dense(n_bins) -> BN, with
    hidden = max(min_units, n_bins // bottleneck); the weights are shared over frames and channels.
    Convolutions see a few neighbouring bins; this sees the whole spectrum at once (harmonics, formants).
    The last batch normalisation starts with gamma = 0, so a new block starts as the identity and a
    trained U-Net gains it without losing what it learned.
    """

    def __init__(
        self,
        n_bins: int,
        bottleneck: int = 16,
        min_units: int = 8,
        momentum: float = 0.99,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if n_bins < 1 or bottleneck < 1 or min_units < 1:
            raise ValueError(
                f"n_bins, bottleneck and min_units must be positive, got {n_bins}, {bottleneck}, "
                f"{min_units}"
            )
        self.n_bins = int(n_bins)
        self.bottleneck = int(bottleneck)
        self.min_units = int(min_units)
        self.momentum = float(momentum)
        self.hidden_units = max(self.min_units, self.n_bins // self.bottleneck)
        self.down = keras.layers.Dense(self.hidden_units, use_bias=False, name="down")
        self.bn_down = keras.layers.BatchNormalization(momentum=self.momentum, name="bn_down")
        self.up = keras.layers.Dense(self.n_bins, use_bias=False, name="up")
        self.bn_up = keras.layers.BatchNormalization(
            momentum=self.momentum, gamma_initializer="zeros", name="bn_up"
        )

    def build(self, input_shape: Any) -> None:
        if input_shape[1] is not None and int(input_shape[1]) != self.n_bins:
            raise ValueError(
                f"TDF expects {self.n_bins} bins, got input shape {tuple(input_shape)}"
            )
        rows = (input_shape[0], input_shape[2], input_shape[3])
        self.down.build((*rows, self.n_bins))
        self.bn_down.build((*rows, self.hidden_units))
        self.up.build((*rows, self.hidden_units))
        self.bn_up.build((*rows, self.n_bins))

    def call(self, x: Any, training: bool | None = None) -> Any:
        y = ops.transpose(x, (0, 2, 3, 1))  # [batch, n_frames, n_filters, n_bins]
        y = ops.relu(self.bn_down(self.down(y), training=training))
        y = self.bn_up(self.up(y), training=training)
        return x + ops.transpose(y, (0, 3, 1, 2))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "n_bins": self.n_bins,
            "bottleneck": self.bottleneck,
            "min_units": self.min_units,
            "momentum": self.momentum,
        }


class ControlNetwork(keras.layers.Layer):
    """Base of the control networks: condition [batch, n_instruments] -> (gammas [batch, n_params],
    betas [batch, n_betas]); n_betas defaults to n_params (FiLM reads as many of each).

    Hidden layers are ReLU; every hidden layer after the first has dropout and batch normalisation,
    as in the paper. The gamma and beta output layers are linear. Subclasses set their own attributes,
    then call `_make_layers`, and define the hidden layer and the input/output reshaping.
    """

    def __init__(
        self,
        units: Sequence[int],
        n_params: int,
        dropout: float = 0.5,
        n_betas: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = tuple(int(u) for u in units)
        self.n_params = int(n_params)
        self.n_betas = self.n_params if n_betas is None else int(n_betas)
        self.dropout = float(dropout)

    def _make_layers(self) -> None:
        init = keras.initializers.RandomNormal(stddev=0.02)
        self.hidden = []
        for i, u in enumerate(self.units):
            block = [self._hidden_layer(i, u, init)]
            if i > 0:
                block += [
                    keras.layers.Dropout(self.dropout, name=f"dropout_{i}"),
                    keras.layers.BatchNormalization(momentum=0.9, name=f"bn_{i}"),
                ]
            self.hidden.append(block)
        self.gamma_layer = keras.layers.Dense(self.n_params, kernel_initializer=init, name="gammas")
        self.beta_layer = keras.layers.Dense(self.n_betas, kernel_initializer=init, name="betas")

    def _hidden_layer(self, index: int, units: int, init: Any) -> keras.layers.Layer:
        raise NotImplementedError

    def _hidden_input_shape(self, input_shape: Any) -> tuple:
        """Shape entering the first hidden layer, from the condition's shape."""
        return tuple(input_shape)

    def _to_hidden(self, condition: Any) -> Any:
        return condition

    def _from_hidden(self, x: Any) -> Any:
        return x

    def _from_hidden_shape(self, shape: tuple) -> tuple:
        return shape

    def build(self, input_shape: Any) -> None:
        shape = self._hidden_input_shape(input_shape)
        for block in self.hidden:
            for layer in block:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)
        shape = self._from_hidden_shape(shape)
        self.gamma_layer.build(shape)
        self.beta_layer.build(shape)

    def call(self, condition: Any, training: bool | None = None) -> tuple[Any, Any]:
        x = self._to_hidden(condition)
        for block in self.hidden:
            for j, layer in enumerate(
                block
            ):  # the first is the Dense/Conv1D; dropout and BN need `training`
                x = layer(x, training=training) if j else layer(x)
        x = self._from_hidden(x)
        return self.gamma_layer(x), self.beta_layer(x)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, Any]:
        return (input_shape[0], self.n_params), (input_shape[0], self.n_betas)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": list(self.units),
            "n_params": self.n_params,
            "n_betas": self.n_betas,
            "dropout": self.dropout,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class DenseControl(ControlNetwork):
    """Dense control network (see `ControlNetwork`): hidden Dense layers of `units` neurons."""

    def __init__(
        self,
        units: Sequence[int],
        n_params: int,
        dropout: float = 0.5,
        n_betas: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(units, n_params, dropout, n_betas, **kwargs)
        self._make_layers()

    def _hidden_layer(self, index: int, units: int, init: Any) -> keras.layers.Layer:
        return keras.layers.Dense(
            units, activation="relu", kernel_initializer=init, name=f"dense_{index}"
        )


@keras.saving.register_keras_serializable(package=PACKAGE)
class CNNControl(ControlNetwork):
    """Conv1D control network (see `ControlNetwork`).

    The condition is read as a sequence of n_instruments steps with one
    channel; Conv1D layers with kernel n_instruments ("same", "same", then
    "valid" for the last) reduce it to one step, followed by linear outputs.
    """

    def __init__(
        self,
        units: Sequence[int],
        n_params: int,
        n_instruments: int,
        dropout: float = 0.5,
        n_betas: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(units, n_params, dropout, n_betas, **kwargs)
        self.n_instruments = int(n_instruments)
        self._make_layers()
        self.flatten = keras.layers.Flatten(name="flatten")

    def _hidden_layer(self, index: int, units: int, init: Any) -> keras.layers.Layer:
        padding = "valid" if index == len(self.units) - 1 else "same"
        return keras.layers.Conv1D(
            units,
            self.n_instruments,
            padding=padding,
            activation="relu",
            kernel_initializer=init,
            name=f"conv_{index}",
        )

    def _hidden_input_shape(self, input_shape: Any) -> tuple:
        return (input_shape[0], self.n_instruments, 1)

    def _to_hidden(self, condition: Any) -> Any:
        return ops.expand_dims(condition, -1)

    def _from_hidden(self, x: Any) -> Any:
        return self.flatten(x)

    def _from_hidden_shape(self, shape: tuple) -> tuple:
        return self.flatten.compute_output_shape(shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_instruments": self.n_instruments}


@keras.saving.register_keras_serializable(package=PACKAGE)
class InputScaling(keras.layers.Layer):
    """Log-compress magnitudes and standardise each frequency bin: (log1p(x) - mean[b]) * scale[b].

    Input and output [batch, n_bins, n_frames, n_channels]. Linear STFT magnitudes span many decades
    and differ by tens of dB between low and high bins; this gives every bin a comparable range.
    mean and scale [n_bins] are trainable; `set_statistics` initialises them from training data.
    """

    def __init__(self, n_bins: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_bins = int(n_bins)

    def build(self, input_shape: Any) -> None:
        self.mean = self.add_weight(shape=(self.n_bins,), initializer="zeros", name="mean")
        self.scale = self.add_weight(shape=(self.n_bins,), initializer="ones", name="scale")

    def call(self, x: Any) -> Any:
        mean = ops.reshape(self.mean, (self.n_bins, 1, 1))
        scale = ops.reshape(self.scale, (self.n_bins, 1, 1))
        return (ops.log1p(x) - mean) * scale

    def set_statistics(self, mean: Any, std: Any) -> None:
        """mean, std: per-bin statistics [n_bins] of log1p(magnitude) over training mixtures."""
        self.mean.assign(ops.convert_to_tensor(mean, "float32"))
        self.scale.assign(1.0 / ops.maximum(ops.convert_to_tensor(std, "float32"), 1e-3))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_bins": self.n_bins}

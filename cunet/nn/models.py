"""The C-U-Net model family (Meseguer-Brocal & Peeters, ISMIR 2019) as Keras functional models.

Inputs:  "magnitude" [batch, n_bins, n_frames, n_channels] (linear STFT magnitude)
         "condition" [batch, n_instruments] (conditioned models only; one-hot selects a source)
Output:  masked magnitude, same shape as "magnitude". The sigmoid mask itself
         is the output of the layer named "mask" (see `mask_model`).
n_frames may be any multiple of 2**n_layers (64 for six blocks).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras

from ..config import Config, ModelConfig
from .layers import TDF, CNNControl, DenseControl, FiLM, GPoCM, InputScaling, film_widths


def _control(model_cfg: ModelConfig, n_params: int, n_betas: int) -> keras.layers.Layer:
    if model_cfg.control_type == "dense":
        return DenseControl(
            model_cfg.control_units,
            n_params,
            dropout=model_cfg.control_dropout,
            n_betas=n_betas,
            name="control",
        )
    return CNNControl(
        model_cfg.control_units,
        n_params,
        len(model_cfg.instruments),
        dropout=model_cfg.control_dropout,
        n_betas=n_betas,
        name="control",
    )


def _bins_per_block(n_bins: int, n_layers: int) -> list[int]:
    """Frequency bins after each stride-2 "same" encoder block: ceil(n / 2) at each step."""
    out = []
    for _ in range(n_layers):
        n_bins = -(-n_bins // 2)
        out.append(n_bins)
    return out


def film_layout(config: Config) -> list[tuple[str, int, int]]:
    """The modulation (FiLM or GPoCM) layers of the model `config` describes, in the order of their
    slices of the control network's outputs: (layer name, gammas it reads, betas it reads); encoder
    blocks first, then decoder blocks."""
    cfg = config.model
    if not cfg.conditioned:
        return []
    blocks = []
    if cfg.film_placement in ("encoder", "both"):
        blocks += [(f"enc_film_{i}", f) for i, f in enumerate(cfg.filters)]
    if cfg.film_placement in ("decoder", "both"):
        blocks += [(f"dec_film_{j}", f) for j, f in enumerate(reversed(cfg.filters[:-1]))]
    return [(name, *film_widths(cfg.film_type, f)) for name, f in blocks]


def _modulation(
    film_type: str, name: str, offsets: list[int], n_filters: int
) -> keras.layers.Layer:
    """The FiLM or GPoCM layer of one block, reading its parameters from `offsets` ([gammas, betas],
    advanced past them)."""
    n_gammas, n_betas = film_widths(film_type, n_filters)
    if film_type == "gpocm":
        layer: keras.layers.Layer = GPoCM(offsets[0], offsets[1], n_filters, name=name)
    else:  # equal offsets: FiLM reads as many gammas as betas
        layer = FiLM(film_type, offsets[0], n_filters, name=name)
    offsets[0] += n_gammas
    offsets[1] += n_betas
    return layer


def build_model(config: Config) -> keras.Model:
    """Build the (conditioned or standard) U-Net described by `config`.

    FiLM (or GPoCM, `model.film_type: gpocm`) sits after the batch normalisation of the blocks
    `model.film_placement` names (encoder blocks first in the control network's outputs, then decoder
    blocks); a residual TDF layer
    follows the activation of the blocks `model.tdf` names.
    """
    cfg = config.model
    n_channels = config.audio.n_channels
    filters = cfg.filters
    dec_filters = tuple(reversed(filters[:-1]))
    bins = _bins_per_block(config.audio.n_bins, len(filters))
    dec_bins = tuple(reversed(bins[:-1]))
    film_enc = cfg.conditioned and cfg.film_placement in ("encoder", "both")
    film_dec = cfg.conditioned and cfg.film_placement in ("decoder", "both")
    tdf_enc = cfg.tdf in ("encoder", "both")
    tdf_dec = cfg.tdf in ("decoder", "both")
    magnitude = keras.Input((config.audio.n_bins, None, n_channels), name="magnitude")
    inputs: dict[str, keras.KerasTensor] = {"magnitude": magnitude}
    gammas = betas = None
    if cfg.conditioned:
        condition = keras.Input((len(cfg.instruments),), name="condition")
        inputs["condition"] = condition
        layout = film_layout(config)
        n_params, n_betas = sum(g for _, g, _ in layout), sum(b for _, _, b in layout)
        gammas, betas = _control(cfg, n_params, n_betas)(condition)

    init = "he_uniform"
    x = magnitude
    if cfg.input_scaling == "log":
        x = InputScaling(config.audio.n_bins, name="input_scaling")(x)
    skips = []
    offsets = [0, 0]  # next gamma and beta of the control network's outputs
    for i, f in enumerate(filters):
        x = keras.layers.Conv2D(
            f,
            cfg.kernel_size,
            strides=2,
            padding="same",
            kernel_initializer=init,
            name=f"enc_conv_{i}",
        )(x)
        x = keras.layers.BatchNormalization(momentum=cfg.batchnorm_momentum, name=f"enc_bn_{i}")(x)
        if film_enc:
            x = _modulation(cfg.film_type, f"enc_film_{i}", offsets, f)([x, gammas, betas])
        x = keras.layers.LeakyReLU(0.2, name=f"enc_act_{i}")(x)
        if tdf_enc:
            x = TDF(
                bins[i], cfg.tdf_bottleneck, momentum=cfg.batchnorm_momentum, name=f"enc_tdf_{i}"
            )(x)
        skips.append(x)

    # Decoder: mirror of the encoder, skip connections from the encoder outputs.
    layers: dict[str, keras.layers.Layer] = {}
    for j, f in enumerate(dec_filters):
        layers[f"dec_conv_{j}"] = keras.layers.Conv2DTranspose(
            f,
            cfg.kernel_size,
            strides=2,
            padding="same",
            kernel_initializer=init,
            name=f"dec_conv_{j}",
        )
        layers[f"dec_bn_{j}"] = keras.layers.BatchNormalization(
            momentum=cfg.batchnorm_momentum, name=f"dec_bn_{j}"
        )
        if film_dec:
            layers[f"dec_film_{j}"] = _modulation(cfg.film_type, f"dec_film_{j}", offsets, f)
        layers[f"dec_act_{j}"] = keras.layers.ReLU(name=f"dec_act_{j}")
        if tdf_dec:
            layers[f"dec_tdf_{j}"] = TDF(
                dec_bins[j],
                cfg.tdf_bottleneck,
                momentum=cfg.batchnorm_momentum,
                name=f"dec_tdf_{j}",
            )
        if j < 3 and cfg.decoder_dropout > 0:
            layers[f"dec_dropout_{j}"] = keras.layers.Dropout(
                cfg.decoder_dropout, name=f"dec_dropout_{j}"
            )
        layers[f"dec_skip_{j}"] = keras.layers.Concatenate(axis=-1, name=f"dec_skip_{j}")
    layers["mask"] = keras.layers.Conv2DTranspose(
        n_channels,
        cfg.kernel_size,
        strides=2,
        padding="same",
        activation="sigmoid",
        kernel_initializer=init,
        name="mask",
    )
    mask = _decode(layers, skips, gammas, betas)
    output = keras.layers.Multiply(name="masked_magnitude")([mask, magnitude])
    kind = "cunet" if cfg.conditioned else "unet"
    return keras.Model(inputs, output, name=f"{kind}_{config.name}")


def _decode(
    layers: Mapping[str, keras.layers.Layer], skips: list[Any], gammas: Any, betas: Any
) -> Any:
    """The decoder's wiring, shared by `build_model` and `encoder_decoder`: `layers` by name (the
    blocks' optional FiLM, TDF and dropout layers are used where present), the encoder outputs
    `skips` (first block first) and the control network's outputs; returns the mask."""
    x = skips[-1]
    for j in range(len(skips) - 1):
        x = layers[f"dec_bn_{j}"](layers[f"dec_conv_{j}"](x))
        if f"dec_film_{j}" in layers:
            x = layers[f"dec_film_{j}"]([x, gammas, betas])
        x = layers[f"dec_act_{j}"](x)
        for name in (f"dec_tdf_{j}", f"dec_dropout_{j}"):
            if name in layers:
                x = layers[name](x)
        x = layers[f"dec_skip_{j}"]([x, skips[-2 - j]])
    return layers["mask"](x)


def encoder_decoder(model: keras.Model, config: Config) -> tuple[keras.Model, keras.Model]:
    """(encoder, decoder) sharing `model`'s layers and weights, for a model whose encoder does not
    depend on the condition (`config.model.shares_encoder`); ValueError otherwise.

    encoder: "magnitude" [batch, n_bins, n_frames, n_channels] -> the list of block outputs (block i:
        [batch, ceil(n_bins / 2**(i+1)), n_frames / 2**(i+1), filters[i]]);
    decoder: {"skip_0", ..., "skip_{n-1}": the encoder's outputs, "condition" [batch, n_instruments]}
        -> the sigmoid mask [batch, n_bins, n_frames, n_channels].
    decoder(encoder(m) + c) equals `mask_model(model)` on (m, c).
    """
    if not config.model.shares_encoder:
        raise ValueError("the encoder depends on the condition unless FiLM is only in the decoder")
    magnitude = next(t for t in model.inputs if t.name == "magnitude")
    names = {layer.name for layer in model.layers}
    skips = [  # each block's output, after its TDF layer if it has one
        model.get_layer(f"enc_tdf_{i}" if f"enc_tdf_{i}" in names else f"enc_act_{i}").output
        for i in range(config.model.n_layers)
    ]
    encoder = keras.Model(magnitude, skips, name=f"{model.name}_encoder")
    inputs = {
        f"skip_{i}": keras.Input(tuple(t.shape[1:]), name=f"skip_{i}") for i, t in enumerate(skips)
    }
    condition = keras.Input((len(config.model.instruments),), name="condition")
    gammas, betas = model.get_layer("control")(condition)
    layers = {layer.name: layer for layer in model.layers}
    mask = _decode(layers, list(inputs.values()), gammas, betas)
    decoder = keras.Model({**inputs, "condition": condition}, mask, name=f"{model.name}_decoder")
    return encoder, decoder


def mask_model(model: keras.Model) -> keras.Model:
    """A model with the same inputs returning the sigmoid mask instead of the masked magnitude."""
    return keras.Model(model.inputs, model.get_layer("mask").output, name=f"{model.name}_mask")


def is_conditioned(model: keras.Model) -> bool:
    """True when the model takes a "condition" input (C-U-Net), False for a plain U-Net."""
    return "condition" in [t.name for t in model.inputs]

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import decoder_film_model

from cunet.config import load_config
from cunet.nn.models import (
    build_model,
    encoder_decoder,
    film_layout,
    is_conditioned,
    mask_model,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL = ["tiny", "default", "standard", "simple_dense", "complex_dense", "simple_cnn", "complex_cnn"]


def _inputs(cfg, batch=2, n_frames=64, seed=0):
    rng = np.random.default_rng(seed)
    mag = np.abs(
        rng.standard_normal((batch, cfg.audio.n_bins, n_frames, cfg.audio.n_channels))
    ).astype("float32")
    inputs = {"magnitude": mag}
    if cfg.model.kind == "conditioned":
        inputs["condition"] = np.eye(len(cfg.model.instruments), dtype="float32")[:batch]
    return inputs


def test_conditions_change_output_and_shapes(tiny_config):
    keras.utils.set_random_seed(3)
    model = build_model(tiny_config)
    mag = _inputs(tiny_config, batch=1)["magnitude"]
    outs = []
    for k in range(4):
        cond = np.zeros((1, 4), "float32")
        cond[0, k] = 1
        out = keras.ops.convert_to_numpy(
            model({"magnitude": mag, "condition": cond}, training=False)
        )
        assert out.shape == mag.shape
        outs.append(out)
    for i in range(4):
        for j in range(i + 1, 4):
            assert not np.allclose(outs[i], outs[j], atol=1e-6), (i, j)


@pytest.mark.parametrize("n_frames", [64, 128, 192])
def test_mask_in_unit_interval_any_multiple_of_64(tiny_config, n_frames):
    model = build_model(tiny_config)
    inputs = _inputs(tiny_config, n_frames=n_frames)
    mask = keras.ops.convert_to_numpy(mask_model(model)(inputs, training=False))
    assert mask.shape == inputs["magnitude"].shape
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    out = keras.ops.convert_to_numpy(model(inputs, training=False))
    np.testing.assert_allclose(out, mask * inputs["magnitude"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_keras_save_load_identical(tmp_path, name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    model = build_model(cfg)
    assert is_conditioned(model) == (cfg.model.kind == "conditioned")
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    inputs = _inputs(cfg)
    expected = keras.ops.convert_to_numpy(model(inputs, training=False))
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(inputs, training=False)), expected
    )


def test_parameter_counts_match_paper():
    # The paper's simple dense C-U-Net has about 10 M parameters.
    n = build_model(load_config(CONFIGS / "simple_dense.yaml")).count_params()
    assert 9.5e6 < n < 10.5e6
    std = build_model(load_config(CONFIGS / "standard.yaml")).count_params()
    assert std < n  # no control network


def test_keras_round_trip_with_log_input_scaling(tmp_path, tiny_config):
    import dataclasses

    cfg = dataclasses.replace(
        tiny_config, model=dataclasses.replace(tiny_config.model, input_scaling="log")
    )
    model = build_model(cfg)
    layer = model.get_layer("input_scaling")
    rng = np.random.default_rng(5)
    layer.set_statistics(rng.uniform(0, 1, cfg.audio.n_bins), rng.uniform(0.5, 2, cfg.audio.n_bins))
    inputs = _inputs(cfg)
    expected = keras.ops.convert_to_numpy(model(inputs, training=False))
    assert model.count_params() == build_model(tiny_config).count_params() + 2 * cfg.audio.n_bins
    path = tmp_path / "log.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(inputs, training=False)), expected
    )
    for a, b in zip(
        loaded.get_layer("input_scaling").get_weights(), layer.get_weights(), strict=False
    ):
        np.testing.assert_array_equal(a, b)


def _variant(cfg, **model_fields):
    import dataclasses

    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **model_fields))


@pytest.mark.parametrize("film_placement", ["encoder", "decoder", "both"])
@pytest.mark.parametrize("tdf", ["none", "encoder", "decoder", "both"])
def test_placements_build_condition_and_round_trip(tmp_path, tiny_config, film_placement, tdf):
    cfg = _variant(tiny_config, film_placement=film_placement, tdf=tdf)
    keras.utils.set_random_seed(4)
    model = build_model(cfg)
    names = [layer.name for layer in model.layers]
    n_blocks = cfg.model.n_layers
    assert sum(n.startswith("enc_film_") for n in names) == (
        n_blocks if film_placement != "decoder" else 0
    )
    assert sum(n.startswith("dec_film_") for n in names) == (
        n_blocks - 1 if film_placement != "encoder" else 0
    )
    assert sum(n.startswith("enc_tdf_") for n in names) == (
        n_blocks if tdf in ("encoder", "both") else 0
    )
    assert sum(n.startswith("dec_tdf_") for n in names) == (
        n_blocks - 1 if tdf in ("decoder", "both") else 0
    )
    inputs = _inputs(cfg, batch=4)
    out = keras.ops.convert_to_numpy(model(inputs, training=False))
    assert out.shape == inputs["magnitude"].shape
    assert not np.allclose(out[0], out[1], atol=1e-6)  # the condition still steers the output
    path = tmp_path / "variant.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(inputs, training=False)), out)


# "both" puts GPoCM in the encoder blocks too
@pytest.mark.parametrize("film_placement", ["decoder", "both"])
def test_gpocm_builds_conditions_and_round_trips(tmp_path, tiny_config, film_placement):
    cfg = _variant(tiny_config, film_type="gpocm", film_placement=film_placement)
    keras.utils.set_random_seed(6)
    model = build_model(cfg)
    layout = film_layout(cfg)
    control = model.get_layer("control")
    assert control.n_params == sum(g for _, g, _ in layout)
    assert control.n_betas == sum(b for _, _, b in layout)
    for name, n_gammas, n_betas in layout:
        layer = model.get_layer(name)
        assert type(layer).__name__ == "GPoCM"
        assert (n_gammas, n_betas) == (layer.n_filters**2, layer.n_filters)
    control.set_weights(  # large enough that the conditions differ clearly
        [np.random.default_rng(6).normal(0, 0.5, w.shape) for w in control.get_weights()]
    )
    inputs = _inputs(cfg, batch=4)
    out = keras.ops.convert_to_numpy(model(inputs, training=False))
    assert not np.allclose(out[0], out[1], atol=1e-6)
    path = tmp_path / "gpocm.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(inputs, training=False)), out)
    if cfg.model.shares_encoder:  # GPoCM only in the decoder: encode once, decode per condition
        encoder, decoder = encoder_decoder(model, cfg)
        skips = encoder(inputs["magnitude"], training=False)
        feed = {f"skip_{i}": keras.ops.convert_to_numpy(t) for i, t in enumerate(skips)}
        masks = decoder({**feed, "condition": inputs["condition"]}, training=False)
        want = mask_model(model)(inputs, training=False)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(masks), keras.ops.convert_to_numpy(want), atol=1e-6
        )


def test_decoder_film_leaves_encoder_independent_of_condition(tiny_config):
    cfg = _variant(tiny_config, film_placement="decoder")
    model = build_model(cfg)
    top = f"enc_act_{cfg.model.n_layers - 1}"
    encoder = keras.Model(model.inputs, model.get_layer(top).output)
    inputs = _inputs(cfg, batch=1)
    codes = []
    for k in range(4):
        inputs["condition"] = np.eye(4, dtype="float32")[k : k + 1]
        codes.append(keras.ops.convert_to_numpy(encoder(inputs, training=False)))
    for code in codes[1:]:
        np.testing.assert_array_equal(code, codes[0])


@pytest.mark.parametrize("tdf", ["none", "encoder", "decoder", "both"])
def test_encoder_once_then_decoder_per_condition_equals_the_model(tiny_config, tdf):
    model, cfg = decoder_film_model(_variant(tiny_config, tdf=tdf, decoder_dropout=0.5), seed=5)
    assert cfg.model.shares_encoder
    encoder, decoder = encoder_decoder(model, cfg)
    inputs = _inputs(cfg, batch=4, n_frames=128)
    skips = encoder(inputs["magnitude"][:1], training=False)
    assert len(skips) == cfg.model.n_layers
    feed = {
        f"skip_{i}": np.repeat(keras.ops.convert_to_numpy(t), 4, axis=0)
        for i, t in enumerate(skips)
    }
    magnitude = np.repeat(inputs["magnitude"][:1], 4, axis=0)
    masks = decoder({**feed, "condition": inputs["condition"]}, training=False)
    want = mask_model(model)(
        {"magnitude": magnitude, "condition": inputs["condition"]}, training=False
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(masks), keras.ops.convert_to_numpy(want), atol=1e-6
    )
    assert not np.allclose(
        keras.ops.convert_to_numpy(masks)[0], keras.ops.convert_to_numpy(masks)[1]
    )
    # the split shares the model's weights: training the model moves them too
    assert {id(w) for w in decoder.weights} <= {id(w) for w in model.weights}


@pytest.mark.parametrize("placement", ["encoder", "both"])
def test_encoder_decoder_refuses_a_condition_dependent_encoder(tiny_config, placement):
    cfg = _variant(tiny_config, film_placement=placement)
    assert not cfg.model.shares_encoder
    with pytest.raises(ValueError, match="only in the decoder"):
        encoder_decoder(build_model(cfg), cfg)
    standard = load_config(CONFIGS / "standard.yaml")
    assert not standard.model.shares_encoder


def test_new_tdf_layer_starts_as_identity(tiny_config):
    # A TDF layer added to a trained U-Net must not change its output before training.
    base = build_model(tiny_config)
    with_tdf = build_model(_variant(tiny_config, tdf="both"))
    for layer in base.layers:
        if layer.weights:
            with_tdf.get_layer(layer.name).set_weights(layer.get_weights())
    inputs = _inputs(tiny_config)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(with_tdf(inputs, training=False)),
        keras.ops.convert_to_numpy(base(inputs, training=False)),
        rtol=1e-5,
        atol=1e-6,
    )

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from cunet.config import load_config
from cunet.nn.models import build_model, is_conditioned, mask_model

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

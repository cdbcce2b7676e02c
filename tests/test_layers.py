from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from cunet.nn.layers import (
    CNNControl,
    DenseControl,
    FiLM,
    GPoCM,
    InputScaling,
    film_param_count,
    film_widths,
)


def test_film_simple_matches_hand_computation():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 3, 5)).astype("float32")
    gammas = rng.standard_normal((2, 3)).astype("float32")
    betas = rng.standard_normal((2, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(FiLM("simple", offset=1, n_filters=5)([x, gammas, betas]))
    expected = np.stack([x[b] * gammas[b, 1] + betas[b, 1] for b in range(2)])
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_film_complex_matches_hand_computation():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 3, 5)).astype("float32")
    gammas = rng.standard_normal((2, 9)).astype("float32")
    betas = rng.standard_normal((2, 9)).astype("float32")
    out = keras.ops.convert_to_numpy(FiLM("complex", offset=2, n_filters=5)([x, gammas, betas]))
    expected = np.empty_like(x)
    for b in range(2):
        for c in range(5):
            expected[b, :, :, c] = x[b, :, :, c] * gammas[b, 2 + c] + betas[b, 2 + c]
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_film_rejects_unknown_type():
    with pytest.raises(ValueError):
        FiLM("medium", 0, 4)


def test_gpocm_matches_hand_computation():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 3, 5)).astype("float32")  # [batch, bins, frames, channels]
    gammas = rng.standard_normal((2, 1 + 25 + 2)).astype("float32")
    betas = rng.standard_normal((2, 2 + 5)).astype("float32")
    layer = GPoCM(gamma_offset=1, beta_offset=2, n_filters=5)
    out = keras.ops.convert_to_numpy(layer([x, gammas, betas]))
    expected = np.empty_like(x)
    for b in range(2):
        w = gammas[b, 1:26].reshape(5, 5)  # [input channel, output channel]
        gate = 1 / (1 + np.exp(-(x[b] @ w + betas[b, 2:7])))
        expected[b] = x[b] * gate
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    clone = GPoCM.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone([x, gammas, betas])), out)


def test_param_counts():
    filters = (16, 32, 64, 128, 256, 512)
    assert film_param_count("simple", filters) == (6, 6)
    assert film_param_count("complex", filters) == (1008, 1008)
    assert film_param_count("gpocm", filters) == (sum(f * f for f in filters), 1008)
    assert film_widths("gpocm", 8) == (64, 8)
    with pytest.raises(ValueError, match="film_type"):
        film_widths("medium", 8)


@pytest.mark.parametrize(
    "layer",
    [
        DenseControl((16, 64, 256), n_params=6),
        DenseControl((16, 256, 1024), n_params=1008),
        CNNControl((16, 32, 64), n_params=6, n_instruments=4),
        CNNControl((32, 64, 256), n_params=1008, n_instruments=4),
        DenseControl((16, 64), n_params=80, n_betas=12),  # GPoCM: n*n gammas, n betas
        CNNControl((16, 32), n_params=80, n_instruments=4, n_betas=12),
    ],
)
def test_control_shapes_and_config_round_trip(layer):
    cond = np.eye(4, dtype="float32")
    gammas, betas = layer(cond, training=False)
    assert tuple(gammas.shape) == (4, layer.n_params)
    assert tuple(betas.shape) == (4, layer.n_betas)
    assert layer.compute_output_shape((4, 4)) == ((4, layer.n_params), (4, layer.n_betas))
    clone = type(layer).from_config(layer.get_config())
    clone(cond)
    clone.set_weights(layer.get_weights())
    g2, b2 = clone(cond, training=False)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(g2), keras.ops.convert_to_numpy(gammas), atol=1e-6
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(b2), keras.ops.convert_to_numpy(betas), atol=1e-6
    )
    # Different instruments get different FiLM parameters.
    g = keras.ops.convert_to_numpy(gammas)
    assert not np.allclose(g[0], g[1])


def test_paper_control_sizes():
    dense = DenseControl((16, 64, 256), n_params=6)
    dense(np.zeros((1, 4), "float32"))
    assert [layer[0].units for layer in dense.hidden] == [16, 64, 256]
    cnn = CNNControl((16, 32, 64), n_params=6, n_instruments=4)
    cnn(np.zeros((1, 4), "float32"))
    assert [layer[0].filters for layer in cnn.hidden] == [16, 32, 64]


def test_input_scaling_matches_hand_computation():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 3, (2, 4, 3, 2)).astype("float32")  # [batch, n_bins, n_frames, n_channels]
    layer = InputScaling(4)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x)), np.log1p(x), rtol=1e-6
    )  # identity statistics
    mean = np.array([0.1, 0.2, 0.3, 0.4], "float32")
    std = np.array([0.5, 1.0, 2.0, 0.0], "float32")  # a constant bin: scale capped at 1 / 1e-3
    layer.set_statistics(mean, std)
    expected = (np.log1p(x) - mean[None, :, None, None]) / np.maximum(std, 1e-3)[
        None, :, None, None
    ]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-5)
    assert [w.shape for w in layer.trainable_weights] == [(4,), (4,)]
    clone = InputScaling.from_config(layer.get_config())
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(x)), expected, rtol=1e-5)


DATA = Path(__file__).resolve().parent / "data"
# Same weights give the same outputs up to float32 rounding, which depends on the CPU's kernels.
SAME = {"rtol": 1e-5, "atol": 1e-6}


@pytest.mark.parametrize("kind", ["dense", "cnn"])
def test_files_saved_before_the_shared_base_load_identically(kind):
    """tests/data holds control networks saved (with non-trivial batch-norm statistics) by the code before
    DenseControl and CNNControl shared a base class, with their outputs: loading gives the same
    outputs, to the float rounding of the machine's matrix kernels (bits differ between CPUs)."""
    golden = np.load(DATA / "legacy_control_outputs.npz")
    model = keras.saving.load_model(DATA / f"legacy_{kind}_control.keras", safe_mode=True)
    layer = model.get_layer("control")
    assert type(layer) is (DenseControl if kind == "dense" else CNNControl)
    assert set(layer.get_config()) >= {"units", "n_params", "dropout"}
    gammas, betas = model(np.eye(4, dtype="float32"), training=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(gammas), golden[f"{kind}_gammas"], **SAME)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(betas), golden[f"{kind}_betas"], **SAME)


def test_shipped_model_control_is_unchanged():
    from cunet.engines.loading import DEFAULT_MODEL, load_keras_model

    if not DEFAULT_MODEL.exists():
        pytest.skip("shipped model not built yet")
    golden = np.load(DATA / "legacy_control_outputs.npz")
    model, _, _ = load_keras_model(DEFAULT_MODEL)
    gammas, betas = model.get_layer("control")(np.eye(4, dtype="float32"), training=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(gammas), golden["shipped_gammas"], **SAME)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(betas), golden["shipped_betas"], **SAME)


def test_tdf_matches_a_hand_computation():
    from cunet.nn.layers import TDF

    rng = np.random.default_rng(7)
    layer = TDF(16, bottleneck=4, min_units=2, momentum=0.9)
    x = rng.standard_normal((2, 16, 5, 3)).astype("float32")
    layer(x)  # build
    assert layer.hidden_units == 4
    down = rng.standard_normal((16, 4)).astype("float32")
    up = rng.standard_normal((4, 16)).astype("float32")
    layer.down.set_weights([down])
    layer.up.set_weights([up])
    layer.bn_up.set_weights(
        [
            np.full(16, 2.0, "float32"),
            np.full(16, 0.5, "float32"),
            np.zeros(16, "float32"),
            np.ones(16, "float32"),
        ]
    )
    out = keras.ops.convert_to_numpy(layer(x, training=False))
    eps = layer.bn_down.epsilon
    rows = np.transpose(x, (0, 2, 3, 1))
    hidden = np.maximum(rows @ down / np.sqrt(1 + eps), 0)
    expected = x + np.transpose(2.0 * (hidden @ up) / np.sqrt(1 + eps) + 0.5, (0, 3, 1, 2))
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    clone = TDF.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_tdf_rejects_a_wrong_bin_count():
    from cunet.nn.layers import TDF

    with pytest.raises(ValueError, match="expects 16 bins"):
        TDF(16)(np.zeros((1, 8, 4, 2), "float32"))

"""cunet.data.pipeline: the tf.data training pipeline over a PatchSampler (structure, order, modes)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import config_sampler

from cunet.data import PatchSampler, split_inputs_targets, train_dataset


def sampler_for(cached, cfg, **kwargs) -> PatchSampler:
    return config_sampler(cached["train"], cfg, seed=3, **kwargs)


def test_split_inputs_targets():
    arrays = {
        k: k
        for k in (
            "magnitude",
            "target",
            "weight",
            "condition",
            "mixture_real",
            "mixture_imag",
            "target_real",
            "target_imag",
        )
    }
    inputs, targets = split_inputs_targets(arrays)
    assert set(inputs) == {"magnitude", "condition", "mixture_real", "mixture_imag"}
    assert set(targets) == {"target", "weight", "target_real", "target_imag"}
    assert split_inputs_targets({"magnitude": 1, "target": 2}) == ({"magnitude": 1}, {"target": 2})


def test_train_dataset_structure_and_order(musdb_cache, tiny_config):
    import tensorflow as tf

    _, cached = musdb_cache
    cfg = tiny_config
    sampler = sampler_for(cached, cfg)
    ds = train_dataset(sampler, 2, first_index=10)
    inputs_spec, targets_spec = ds.element_spec
    shape = (2, cfg.audio.n_bins, cfg.model.n_frames, 2)
    assert set(inputs_spec) == {"magnitude", "condition"} and set(targets_spec) == {
        "target",
        "weight",
    }
    assert inputs_spec["magnitude"].shape == shape and inputs_spec["condition"].shape == (2, 4)
    assert targets_spec["target"].shape == (2, 1, *shape[1:]) and targets_spec["weight"].shape == (
        2,
        1,
    )
    assert all(s.dtype == tf.float32 for s in [*inputs_spec.values(), *targets_spec.values()])
    for i, (inputs, targets) in enumerate(ds.take(3)):
        expected = sampler.batch(10 + i, 2)  # deterministic order: batch index = first_index + step
        for key, value in {**inputs, **targets}.items():
            np.testing.assert_array_equal(value.numpy(), expected[key], err_msg=key)


@pytest.mark.parametrize("joint", [False, True])
def test_train_dataset_with_complex_parts(musdb_cache, tiny_config, joint):
    _, cached = musdb_cache
    cfg = tiny_config
    sampler = sampler_for(cached, cfg, joint=joint, with_complex=True)
    ds = train_dataset(sampler, 1)
    inputs_spec, targets_spec = ds.element_spec
    k = 4 if joint else 1
    assert set(inputs_spec) == {"magnitude", "mixture_real", "mixture_imag"} | (
        set() if joint else {"condition"}
    )
    assert set(targets_spec) == {"target", "weight", "target_real", "target_imag"}
    assert targets_spec["target_real"].shape == (1, k, cfg.audio.n_bins, cfg.model.n_frames, 2)
    inputs, targets = next(iter(ds))
    expected = sampler.batch(0, 1)
    for key, value in {**inputs, **targets}.items():
        np.testing.assert_array_equal(value.numpy(), expected[key], err_msg=key)


def test_standard_unet_dataset(musdb_cache, tiny_config):
    _, cached = musdb_cache
    sampler = sampler_for(cached, tiny_config, fixed_target=0)
    inputs, _ = next(iter(train_dataset(sampler, 2)))
    np.testing.assert_array_equal(
        inputs["condition"].numpy(), np.tile(np.eye(4, dtype=np.float32)[0], (2, 1))
    )

"""tf.data pipelines over a `PatchSampler`: (inputs, targets) dictionaries for Keras `fit`."""

from __future__ import annotations

from typing import Any

import numpy as np

from .sampler import X_KEYS, PatchSampler


def split_inputs_targets(arrays: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """({magnitude, condition, mixture_real, mixture_imag}, {target, weight, target_real, target_imag})."""
    return (
        {k: v for k, v in arrays.items() if k in X_KEYS},
        {k: v for k, v in arrays.items() if k not in X_KEYS},
    )


def train_dataset(sampler: PatchSampler, batch_size: int, first_index: int = 0) -> Any:
    """Infinite, deterministic tf.data pipeline of batch `first_index`, `first_index + 1`, ...

    batch_size: mixtures per batch. Elements: (inputs, targets) dicts of float32 tensors
    shaped as `sampler.shapes(batch_size)`.
    """
    import tensorflow as tf

    keys = sampler.keys()
    shapes = sampler.shapes(batch_size)

    def draw(index: np.ndarray) -> list[np.ndarray]:
        arrays = sampler.batch(int(index), batch_size)
        return [arrays[k] for k in keys]

    def to_tensors(index: tf.Tensor) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
        values = tf.numpy_function(draw, [index], [tf.float32] * len(keys))
        return split_inputs_targets(
            {k: tf.ensure_shape(v, shapes[k]) for k, v in zip(keys, values, strict=False)}
        )

    ds = tf.data.Dataset.counter(first_index)
    ds = ds.map(to_tensors, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)

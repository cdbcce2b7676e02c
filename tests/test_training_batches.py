"""cunet.training.batches: the PyDataset that feeds JAX and torch gives tf.data's batches, in its order,
epoch after epoch."""

from __future__ import annotations

import numpy as np
from conftest import config_sampler

from cunet.data import train_dataset
from cunet.training.batches import PatchBatches


def test_patch_batches_match_the_tf_data_stream_across_epochs(musdb_cache, tiny_config):
    _, cached = musdb_cache
    cfg = tiny_config
    sampler = config_sampler(cached["train"], cfg, seed=5, joint=True, with_complex=True)
    steps, first = 3, 7
    batches = PatchBatches(sampler, 2, steps, first_index=first, workers=2)
    assert len(batches) == steps
    stream = []
    for _ in range(2):  # two epochs, as fit walks them
        stream += [batches[i] for i in range(len(batches))]
        batches.on_epoch_end()
    reference = list(
        train_dataset(sampler, 2, first_index=first).take(2 * steps).as_numpy_iterator()
    )
    assert len(stream) == len(reference) == 2 * steps
    for (x, y), (rx, ry) in zip(stream, reference, strict=True):
        assert set(x) == set(rx) == {"magnitude", "mixture_real", "mixture_imag"}
        assert set(y) == set(ry) == {"target", "weight", "target_real", "target_imag"}
        for key in x:
            np.testing.assert_array_equal(x[key], rx[key])
        for key in y:
            np.testing.assert_array_equal(y[key], ry[key])
    # Consecutive steps are distinct batches (the index moves on), not one batch repeated.
    assert not np.array_equal(stream[0][0]["magnitude"], stream[1][0]["magnitude"])

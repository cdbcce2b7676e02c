"""The in-graph (TensorFlow) separation agrees with the NumPy path it mirrors."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from conftest import synth_mixture

from cunet.chunking import crossfade_window
from cunet.export.graph import chunk_graph, crossfade_window_graph
from cunet.nn.models import mask_model


def test_chunk_graph_equals_chunk_separator(tiny_separator) -> None:
    config = tiny_separator.config
    masker = mask_model(tiny_separator.engine.model)

    def mask_fn(magnitude: tf.Tensor, condition: tf.Tensor) -> tf.Tensor:
        return masker({"magnitude": magnitude, "condition": condition}, training=False)

    waveform = np.stack([synth_mixture(0.4, seed=1), synth_mixture(0.4, seed=2)])  # two groups
    cond = np.eye(4, dtype=np.float32)[[0, 2]]
    in_graph = chunk_graph(
        tf.constant(waveform), tf.constant(cond), config.audio, config.model.time_multiple, mask_fn
    ).numpy()
    numpy_path = tiny_separator.chunk_separator.separate_chunk(waveform, cond)
    assert in_graph.shape == numpy_path.shape == (2, 2, waveform.shape[1], 2)
    np.testing.assert_allclose(numpy_path, in_graph, atol=1e-5)
    assert np.abs(in_graph).max() > 1e-3


def test_crossfade_twins_are_equal() -> None:
    for chunk, overlap in [(10, 0), (10, 3), (4410, 441)]:
        np.testing.assert_array_equal(
            crossfade_window_graph(tf.constant(chunk), overlap).numpy(),
            crossfade_window(chunk, overlap),
        )

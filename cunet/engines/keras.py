"""TensorFlow engines: a Keras model's "mask" layer (`KerasEngine`) and a `cunet export` SavedModel
(`SavedModelEngine`). TensorFlow is imported only when one is built."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import Config
from ..tflog import import_tensorflow
from .base import MaskEngine, batch_conditions


class KerasEngine(MaskEngine):
    """Masks from a cunet Keras model's "mask" layer, run as one tf.function (shapes relaxed).

    For a model whose encoder does not depend on the condition (FiLM only in the decoder) the encoder
    runs once per group and the decoder once per (condition, group) pair.
    """

    def __init__(self, model: Any, config: Config) -> None:
        # Keras: loaded only when a Keras engine is built
        from ..nn.models import encoder_decoder, mask_model

        tf = import_tensorflow()
        self.model = model
        self.config = config
        a, m = config.audio, config.model
        conditioned = m.conditioned
        self.encodes_once = m.shares_encoder
        masker = mask_model(model)
        encoder, decoder = encoder_decoder(model, config) if self.encodes_once else (None, None)

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, a.n_bins, None, a.n_channels], tf.float32),
                tf.TensorSpec([None, len(m.instruments)], tf.float32),
            ],
            reduce_retracing=True,
            autograph=False,
        )  # no Python control flow to convert
        def run(magnitude: Any, conditions: Any) -> Any:
            n_cond, n_groups = tf.shape(conditions)[0], tf.shape(magnitude)[0]
            # condition-major: row c * n_groups + g is condition c of group g
            if encoder is not None and decoder is not None:
                skips = encoder(magnitude, training=False)
                inputs = {f"skip_{i}": tf.tile(t, [n_cond, 1, 1, 1]) for i, t in enumerate(skips)}
                inputs["condition"] = tf.repeat(conditions, n_groups, axis=0)
                mask = decoder(inputs, training=False)
            else:
                inputs = {"magnitude": tf.tile(magnitude, [n_cond, 1, 1, 1])}
                if conditioned:
                    inputs["condition"] = tf.repeat(conditions, n_groups, axis=0)
                mask = masker(inputs, training=False)
            return tf.reshape(mask, tf.concat([[n_cond, n_groups], tf.shape(mask)[1:]], axis=0))

        self._run = run
        self._tf = tf

    def masks(self, magnitude: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        tf = self._tf
        return self._run(
            tf.constant(magnitude, tf.float32), tf.constant(conditions, tf.float32)
        ).numpy()


class SavedModelEngine(MaskEngine):
    """Masks from the `spectrogram` signature of a loaded `cunet export` SavedModel."""

    def __init__(self, loaded: Any, config: Config) -> None:
        self._tf = import_tensorflow()
        self.loaded = loaded  # keeps the variables alive
        self.config = config
        self._signature = loaded.signatures["spectrogram"]

    def masks(self, magnitude: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        tf = self._tf
        mag, cond = batch_conditions(magnitude, conditions)
        mask = self._signature(magnitude=tf.constant(mag), condition=tf.constant(cond))[
            "mask"
        ].numpy()
        return mask.reshape(conditions.shape[0], magnitude.shape[0], *mask.shape[1:])

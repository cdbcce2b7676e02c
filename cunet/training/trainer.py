"""The model Keras `fit` trains: a C-U-Net (or U-Net) plus the training objective.

`SeparationTrainer` wraps the network that is saved and shipped (`trainer.network`, a plain
functional model with the "magnitude"/"condition" inputs and the "mask" layer) and adds:
- joint training: each mixture runs through every instrument's condition in one batch, and the
  masks are combined across instruments (ratio normalisation) before the loss, as at inference,
  plus (`raw_mask_loss_weight`) the same loss on each instrument's own mask;
- the loss: L1 between (optionally power-compressed) magnitudes, and/or the negative SDR of the
  waveform rebuilt from the masked mixture STFT (mixture phase) against the target waveform.

Batches are the dictionaries of `cunet.data.pipeline.train_dataset`: inputs {magnitude
[B, n_bins, F, ch], condition [B, n_instruments], mixture_real/imag}, targets {target
[B, K, n_bins, F, ch], weight [B, K], target_real/imag} with K = 1 or n_instruments (joint).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from ..config import Config
from ..nn.models import mask_model
from ..postprocess import MASK_EPS

SDR_EPS = 1e-3  # energy floor (waveform units squared) for SDR on near-silent patches


def normalise_masks(masks: tf.Tensor, axis: int) -> tf.Tensor:
    """Ratio normalisation: masks / sum over the instrument axis; TF twin of postprocess.ratio_masks."""
    return (masks + MASK_EPS) / (
        tf.reduce_sum(masks, axis=axis, keepdims=True)
        + MASK_EPS * tf.cast(tf.shape(masks)[axis], masks.dtype)
    )


def patch_waveform(real: tf.Tensor, imag: tf.Tensor, n_fft: int, hop_length: int) -> tf.Tensor:
    """Model-layout complex patches [..., n_bins, F, ch] -> waveform [..., ch, n] without the edges.

    Bins above n_bins are zero; the (n_fft - hop) samples at each end, which fewer frames
    cover, are dropped so the estimate and the target are compared where both are exact.
    """
    spec = tf.complex(real, imag)
    rank = len(spec.shape)
    perm = list(range(rank - 3)) + [rank - 1, rank - 2, rank - 3]
    spec = tf.transpose(spec, perm)  # [..., ch, F, n_bins]
    missing = n_fft // 2 + 1 - spec.shape[-1]
    if missing > 0:
        spec = tf.pad(spec, [[0, 0]] * (rank - 1) + [[0, missing]])
    window = tf.signal.inverse_stft_window_fn(hop_length, forward_window_fn=tf.signal.hann_window)
    wave = tf.signal.inverse_stft(spec, n_fft, hop_length, fft_length=n_fft, window_fn=window)
    edge = n_fft - hop_length
    return wave[..., edge : tf.shape(wave)[-1] - edge]


class SeparationTrainer(keras.Model):
    """Trains `network` (built by `cunet.nn.models.build_model(config)`) with `config.train`'s objective."""

    def __init__(self, network: keras.Model, config: Config, **kwargs: Any) -> None:
        super().__init__(name="trainer", **kwargs)
        self.network = network
        self.masker = mask_model(network)
        self.config = config
        self.conditioned = config.model.conditioned
        self.joint = config.train.joint
        self.n_instruments = len(config.model.instruments)

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """The network's own masks [B, K, n_bins, F, ch] (K = n_instruments when joint, else 1)."""
        magnitude = inputs["magnitude"]
        if not self.joint:
            feed = {"magnitude": magnitude}
            if self.conditioned:
                feed["condition"] = inputs["condition"]
            return self.masker(feed, training=training)[:, None]
        n = self.n_instruments
        batch = tf.shape(magnitude)[0]
        conditions = tf.tile(tf.eye(n, dtype=magnitude.dtype), [batch, 1])
        masks = self.masker(
            {"magnitude": tf.repeat(magnitude, n, axis=0), "condition": conditions},
            training=training,
        )
        return tf.reshape(masks, tf.concat([[batch, n], tf.shape(masks)[1:]], 0))

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> tf.Tensor:
        t = self.config.train
        y_pred = tf.cast(y_pred, tf.float32)  # masks computed in bfloat16 under a mixed policy
        if self.joint and self.config.model.postprocess == "ratio":
            loss = self._objective(x, y, normalise_masks(y_pred, axis=1))
            if (
                t.raw_mask_loss_weight > 0
            ):  # anchors each mask on its own: ratios alone leave their scale free
                loss += t.raw_mask_loss_weight * self._objective(x, y, y_pred)
        else:
            loss = self._objective(x, y, y_pred)
        # Keras sums the replicas' gradients under tf.distribute: scale like its own losses do.
        return loss / tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, loss.dtype)

    def _objective(self, x: Any, y: Any, masks: tf.Tensor) -> tf.Tensor:
        """Weighted L1 on magnitudes and/or negative SDR on waveforms, averaged over known targets."""
        t = self.config.train
        weight = y["weight"]  # [B, K]
        count = tf.maximum(tf.reduce_sum(weight), 1.0)
        loss = tf.constant(0.0)
        if t.magnitude_loss_weight > 0:
            estimate = masks * x["magnitude"][:, None]
            target = y["target"]
            if t.magnitude_loss_power != 1.0:
                estimate = tf.pow(estimate + 1e-8, t.magnitude_loss_power)
                target = tf.pow(target + 1e-8, t.magnitude_loss_power)
            per_patch = tf.reduce_mean(tf.abs(estimate - target), axis=[2, 3, 4])
            loss += t.magnitude_loss_weight * tf.reduce_sum(per_patch * weight) / count
        if t.sdr_loss_weight > 0:
            a = self.config.audio
            est = patch_waveform(
                masks * x["mixture_real"][:, None],
                masks * x["mixture_imag"][:, None],
                a.n_fft,
                a.hop_length,
            )
            ref = patch_waveform(y["target_real"], y["target_imag"], a.n_fft, a.hop_length)
            signal = tf.reduce_sum(tf.square(ref), axis=[2, 3])
            error = tf.reduce_sum(tf.square(ref - est), axis=[2, 3])
            sdr = 10.0 * tf.math.log((signal + SDR_EPS) / (error + SDR_EPS)) / tf.math.log(10.0)
            loss += t.sdr_loss_weight * -tf.reduce_sum(sdr * weight) / count
        return loss

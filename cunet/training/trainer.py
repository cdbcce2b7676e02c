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
import numpy as np
from keras import ops

from ..config import Config
from ..dsp import inverse_window
from ..nn.models import mask_model
from ..postprocess import MASK_EPS

SDR_EPS = 1e-3  # energy floor (waveform units squared) for SDR on near-silent patches


def normalise_masks(masks: Any, axis: int) -> Any:
    """Ratio normalisation: masks / sum over the instrument axis; Keras twin of postprocess.ratio_masks."""
    return (masks + MASK_EPS) / (
        ops.sum(masks, axis=axis, keepdims=True) + MASK_EPS * float(masks.shape[axis])
    )


def patch_waveform(real: Any, imag: Any, n_fft: int, hop_length: int) -> Any:
    """Model-layout complex patches [..., n_bins, F, ch] -> waveform [..., ch, n] without the edges.

    Bins above n_bins are zero; the (n_fft - hop) samples at each end, which fewer frames
    cover, are dropped so the estimate and the target are compared where both are exact.
    The inverse is `cunet.dsp.istft`'s (tf.signal's window weighting and overlap-add) in
    `keras.ops`, so every backend trains with it.
    """
    rank = len(real.shape)
    perm = [*range(rank - 3), rank - 1, rank - 2, rank - 3]
    real, imag = ops.transpose(real, perm), ops.transpose(imag, perm)  # [..., ch, F, n_bins]
    missing = n_fft // 2 + 1 - real.shape[-1]
    if missing > 0:
        pad = [(0, 0)] * (rank - 1) + [(0, missing)]
        real, imag = ops.pad(real, pad), ops.pad(imag, pad)
    frames = ops.irfft((real, imag), fft_length=n_fft) * inverse_window(n_fft, hop_length)
    # Overlap-add: each frame is r hop-long pieces; piece j of frame f lands at hop slot f + j.
    r = -(-n_fft // hop_length)
    n_frames = frames.shape[-2]
    lead = list(frames.shape[:-2])
    if r * hop_length > n_fft:
        frames = ops.pad(frames, [(0, 0)] * (rank - 1) + [(0, r * hop_length - n_fft)])
    pieces = ops.reshape(frames, (-1, n_frames, r, hop_length))
    slots = 0.0
    for j in range(r):
        slots = slots + ops.pad(pieces[:, :, j], [(0, 0), (j, r - 1 - j), (0, 0)])
    wave = ops.reshape(slots, (-1, *lead[1:], (n_frames + r - 1) * hop_length))
    edge = n_fft - hop_length
    return wave[..., edge : (n_frames - 1) * hop_length + n_fft - edge]


def replicas_in_sync() -> int:
    """Replicas whose gradients Keras sums: tf.distribute's under TensorFlow, else 1."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf  # only the TensorFlow backend distributes, through tf.distribute

    return int(tf.distribute.get_strategy().num_replicas_in_sync)


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

    def call(self, inputs: dict[str, Any], training: bool = False) -> Any:
        """The network's own masks [B, K, n_bins, F, ch] (K = n_instruments when joint, else 1)."""
        magnitude = inputs["magnitude"]
        if not self.joint:
            feed = {"magnitude": magnitude}
            if self.conditioned:
                feed["condition"] = inputs["condition"]
            return self.masker(feed, training=training)[:, None]
        n = self.n_instruments
        batch = ops.shape(magnitude)[0]
        conditions = ops.tile(ops.eye(n, dtype=magnitude.dtype), [batch, 1])
        masks = self.masker(
            {"magnitude": ops.repeat(magnitude, n, axis=0), "condition": conditions},
            training=training,
        )
        return ops.reshape(masks, (-1, n, *masks.shape[1:]))

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        t = self.config.train
        y_pred = ops.cast(y_pred, "float32")  # masks computed in bfloat16 under a mixed policy
        if self.joint and self.config.model.postprocess == "ratio":
            loss = self._objective(x, y, normalise_masks(y_pred, axis=1))
            if (
                t.raw_mask_loss_weight > 0
            ):  # anchors each mask on its own: ratios alone leave their scale free
                loss += t.raw_mask_loss_weight * self._objective(x, y, y_pred)
        else:
            loss = self._objective(x, y, y_pred)
        # Keras sums the replicas' gradients under tf.distribute: scale like its own losses do.
        return loss / float(replicas_in_sync())

    def _objective(self, x: Any, y: Any, masks: Any) -> Any:
        """Weighted L1 on magnitudes and/or negative SDR on waveforms, averaged over known targets."""
        t = self.config.train
        weight = y["weight"]  # [B, K]
        count = ops.maximum(ops.sum(weight), 1.0)
        loss = ops.zeros((), "float32")
        if t.magnitude_loss_weight > 0:
            estimate = masks * x["magnitude"][:, None]
            target = y["target"]
            if t.magnitude_loss_power != 1.0:
                estimate = ops.power(estimate + 1e-8, t.magnitude_loss_power)
                target = ops.power(target + 1e-8, t.magnitude_loss_power)
            per_patch = ops.mean(ops.abs(estimate - target), axis=(2, 3, 4))
            loss += t.magnitude_loss_weight * ops.sum(per_patch * weight) / count
        if t.sdr_loss_weight > 0:
            a = self.config.audio
            est = patch_waveform(
                masks * x["mixture_real"][:, None],
                masks * x["mixture_imag"][:, None],
                a.n_fft,
                a.hop_length,
            )
            ref = patch_waveform(y["target_real"], y["target_imag"], a.n_fft, a.hop_length)
            signal = ops.sum(ops.square(ref), axis=(2, 3))
            error = ops.sum(ops.square(ref - est), axis=(2, 3))
            sdr = 10.0 * ops.log((signal + SDR_EPS) / (error + SDR_EPS)) / float(np.log(10.0))
            sdr_weight = weight
            if t.sdr_loss_min_rms > 0:  # silent targets: SDR undefined, left to the L1 term
                n_values = float(np.prod(ref.shape[2:]))
                active = signal >= n_values * t.sdr_loss_min_rms**2
                sdr_weight = weight * ops.cast(active, weight.dtype)
            sdr_count = ops.maximum(ops.sum(sdr_weight), 1.0)
            loss += t.sdr_loss_weight * -ops.sum(sdr * sdr_weight) / sdr_count
        return loss

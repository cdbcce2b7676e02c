"""The per-chunk computation, written once for every backend.

A `MaskEngine` turns magnitude patches into sigmoid masks: that is all a backend (Keras, a SavedModel
export, later LiteRT) has to implement. `ChunkSeparator` does the rest with NumPy, the same for every
engine: STFT (`cunet.dsp`) -> magnitude of the model's bins in its layout -> frames padded to the
engine's multiple -> `engine.masks` -> crop -> masks of all conditions post-processed together (the
`cunet.postprocess` step: none, ratio or Wiener) -> top bins filled -> applied to the complex STFT ->
inverse STFT; and the channel mapping of inputs to the model (mono through a stereo model,
stereo through a mono one).

TensorFlow is imported only when a TF engine is built.
"""
from __future__ import annotations

import abc
from typing import Any, Iterable, Sequence

import numpy as np

from . import dsp
from .config import Config
from .errors import AudioError, ModelError
from .postprocess import Postprocess
from .tflog import import_tensorflow

class MaskEngine(abc.ABC):
    """Computes a model's masks for magnitude patches; one implementation per backend.

    config: the model's Config (audio settings, instruments, `model.time_multiple`, `model.conditioned`).
    preferred_frames: hook for fixed-shape backends (e.g. LiteRT): when set, `ChunkSeparator` pads the
        frame axis to a multiple of it (it must be a multiple of the time multiple) instead of the time
        multiple, so the engine can cut its input into windows of exactly that many frames.
    """

    config: Config
    preferred_frames: int | None = None

    @abc.abstractmethod
    def masks(self, magnitude: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        """Masks of every condition for every group.

        magnitude: float32 [n_groups, n_bins, n_frames, n_channels] (linear STFT magnitude, the model's
            n_bins and channels; n_frames a multiple of `frame_multiple`).
        conditions: float32 [n_cond, n_instruments] (one-hot rows select an instrument).
        Returns float32 [n_cond, n_groups, n_bins, n_frames, n_channels] in [0, 1].
        """

    @property
    def frame_multiple(self) -> int:
        """Frame counts given to `masks` are multiples of this."""
        return self.preferred_frames or self.config.model.time_multiple


def batch_conditions(magnitude: np.ndarray, conditions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (magnitude, condition) batch of every condition x group pair, condition-major:
    ([n_cond * n_groups, n_bins, n_frames, ch], [n_cond * n_groups, n_instruments])."""
    n_cond, n_groups = conditions.shape[0], magnitude.shape[0]
    return np.tile(magnitude, (n_cond, 1, 1, 1)), np.repeat(conditions, n_groups, axis=0)


def check_channels(n_channels: int, prefix: str = "") -> None:
    """AudioError unless the input is mono or stereo (what the channel mapping supports)."""
    if n_channels not in (1, 2):
        raise AudioError(f"{prefix}{n_channels} channels are not supported; only mono and stereo "
                         "(downmix first, e.g. ffmpeg -i in.wav -ac 2 out.wav)")


class KerasEngine(MaskEngine):
    """Masks from a cunet Keras model's "mask" layer, run as one tf.function (shapes relaxed)."""

    def __init__(self, model: Any, config: Config) -> None:
        from .models import mask_model  # Keras: loaded only when a Keras engine is built

        tf = import_tensorflow()
        self.model = model
        self.config = config
        a, m = config.audio, config.model
        masker = mask_model(model)
        conditioned = m.conditioned

        @tf.function(input_signature=[tf.TensorSpec([None, a.n_bins, None, a.n_channels], tf.float32),
                                      tf.TensorSpec([None, len(m.instruments)], tf.float32)],
                     reduce_retracing=True, autograph=False)  # no Python control flow to convert
        def run(magnitude: Any, conditions: Any) -> Any:
            n_cond, n_groups = tf.shape(conditions)[0], tf.shape(magnitude)[0]
            mag = tf.tile(magnitude, [n_cond, 1, 1, 1])
            inputs = {"magnitude": mag}
            if conditioned:
                inputs["condition"] = tf.repeat(conditions, n_groups, axis=0)
            mask = masker(inputs, training=False)
            return tf.reshape(mask, tf.concat([[n_cond, n_groups], tf.shape(mask)[1:]], axis=0))

        self._run = run
        self._tf = tf

    def masks(self, magnitude: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        tf = self._tf
        return self._run(tf.constant(magnitude, tf.float32), tf.constant(conditions, tf.float32)).numpy()


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
        mask = self._signature(magnitude=tf.constant(mag), condition=tf.constant(cond))["mask"].numpy()
        return mask.reshape(conditions.shape[0], magnitude.shape[0], *mask.shape[1:])


class ChunkSeparator:
    """Separates waveform chunks with any MaskEngine (see the module docstring for the steps).

    postprocess: how the masks of the chunk's conditions become estimates (`cunet.postprocess`);
    a joint mode needs the conditions of every instrument (the caller passes them, and `outputs`).
    """

    def __init__(self, engine: MaskEngine, postprocess: Postprocess | None = None) -> None:
        self.engine = engine
        self.audio = engine.config.audio
        self.postprocess = postprocess or Postprocess()

    def separate_chunk(self, waveform: np.ndarray, conditions: np.ndarray,
                       outputs: Sequence[int] | None = None) -> np.ndarray:
        """waveform float32 [n_groups, n_samples, n_channels] (the model's channels), conditions float32
        [n_cond, n_instruments] -> stems float32 [n_out, n_groups, n_samples, n_channels] of the
        conditions `outputs` (default: all), after post-processing the masks of all conditions together."""
        a = self.audio
        n_samples = waveform.shape[1]
        spec = dsp.stft(np.transpose(waveform, (0, 2, 1)), a.n_fft, a.hop_length)      # [G, ch, F, freq]
        magnitude = np.transpose(np.abs(spec[..., :a.n_bins]), (0, 3, 2, 1))           # [G, bins, F, ch]
        n_frames = magnitude.shape[2]
        multiple = self.engine.frame_multiple
        padded = -(-n_frames // multiple) * multiple    # the U-Net needs whole multiples of its stride
        magnitude = np.pad(magnitude, [(0, 0), (0, 0), (0, padded - n_frames), (0, 0)])
        masks = self.engine.masks(np.ascontiguousarray(magnitude, np.float32), conditions)[:, :, :, :n_frames]
        keep = list(range(masks.shape[0])) if outputs is None else list(outputs)
        if self.postprocess.mode == "wiener":  # needs every condition's full-band mask at once
            full = dsp.expand_mask_bins(np.transpose(masks, (0, 1, 4, 3, 2)), a.n_fft)   # [C, G, ch, F, freq]
            estimates = self.postprocess(full, spec)                                   # complex [C, G, ch, F, freq]
            parts: Iterable[np.ndarray] = (estimates[c] for c in keep)
        else:  # none / ratio: one estimate at a time, never all conditions' full-band arrays together
            parts = (dsp.apply_mask(spec, np.transpose(mask, (0, 3, 2, 1)))          # mask [G, bins, F, ch]
                     for mask in self.postprocess.each_mask(masks, keep))
        stems = np.empty((len(keep), waveform.shape[0], n_samples, waveform.shape[2]), np.float32)
        for i, estimate in enumerate(parts):  # one output at a time bounds the inverse STFT's buffers
            stems[i] = np.transpose(dsp.istft(estimate, n_samples, a.n_fft, a.hop_length), (0, 2, 1))
        return stems                                                                   # [C', G, n, ch]

    def __call__(self, chunk: np.ndarray, conditions: np.ndarray, outputs: Sequence[int] | None = None
                 ) -> np.ndarray:
        """chunk float32 [n_samples, n_in] (n_in 1 or 2, any model) -> float32 [n_out, n_samples, n_in]
        (the conditions `outputs`, default all, after post-processing; see `separate_chunk`).

        Mono through a stereo model is duplicated in and averaged out; stereo through a mono model runs
        each channel as its own group. ModelError if the model produces NaN or infinite values.
        """
        model_ch, n_in = self.audio.n_channels, chunk.shape[1]
        check_channels(n_in)
        if model_ch == n_in:
            groups = chunk[None]
        elif model_ch == 2:
            groups = np.repeat(chunk, 2, axis=1)[None]
        else:
            groups = np.transpose(chunk)[:, :, None]
        out = self.separate_chunk(np.ascontiguousarray(groups, np.float32), conditions, outputs)  # [C', G, n, ch]
        if not np.isfinite(out).all():  # inputs are checked finite, so the weights are bad (corrupt file?)
            raise ModelError("the model produced NaN or infinite values; its weights may be corrupt")
        if model_ch == n_in:
            return out[:, 0]
        if model_ch == 2:
            return out[:, 0].mean(axis=-1, keepdims=True)
        return np.transpose(out[..., 0], (0, 2, 1))

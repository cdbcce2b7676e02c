"""The interface every backend implements: a `MaskEngine` turns magnitude patches into sigmoid masks.

Implementations: `cunet.engines.keras` (a Keras model, a SavedModel export), `cunet.engines.litert`
(`.tflite`), `cunet.engines.onnxrt` (`.onnx`). Everything else about a chunk (STFT, padding,
post-processing, inverse STFT) is done once for all of them by `cunet.chunk_separator.ChunkSeparator`.
"""

from __future__ import annotations

import abc

import numpy as np

from ..config import Config
from ..workers import cpu_count as cpu_count  # re-exported: the engines size their threads by it


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


def batch_conditions(
    magnitude: np.ndarray, conditions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The (magnitude, condition) batch of every condition x group pair, condition-major:
    ([n_cond * n_groups, n_bins, n_frames, ch], [n_cond * n_groups, n_instruments])."""
    n_cond, n_groups = conditions.shape[0], magnitude.shape[0]
    return np.tile(magnitude, (n_cond, 1, 1, 1)), np.repeat(conditions, n_groups, axis=0)

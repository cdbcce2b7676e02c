"""Combining the masks of all instruments at inference (NumPy only).

masks: float32 [n_instruments, ...] in [0, 1], one mask per instrument of the model, for the
same mixture. "ratio" rescales them to sum to one over the instruments, so the estimates add up
to the mixture (mixture consistency); "none" leaves each mask as the network gave it.
"""
from __future__ import annotations

import numpy as np

MASK_EPS = 1e-6  # keeps normalised masks finite where every mask is zero


def ratio_masks(masks: np.ndarray, axis: int = 0) -> np.ndarray:
    """masks / their sum over `axis` (the instrument axis); same shape, float32."""
    masks = np.asarray(masks, np.float32)
    total = masks.sum(axis=axis, keepdims=True) + MASK_EPS * masks.shape[axis]
    return (masks + MASK_EPS) / total

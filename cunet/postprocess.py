"""Combining the masks of all instruments into estimates at inference (NumPy only).

A conditioned model gives one mask per instrument, each computed on its own. Modes:
- "none": each estimate is its own mask times the mixture STFT;
- "ratio": the masks raised to `power` are normalised to sum to one over the instruments, so the
  estimates add up to the mixture (mixture consistency; what joint training optimises);
- "wiener": a multichannel Wiener filter (sigsep's `norbert`, `iterations` EM steps) from the
  magnitude estimates, which also uses the stereo image.
"ratio" and "wiener" need every instrument's mask of the same chunk.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import Config, ModelConfig
from .errors import UserError

MASK_EPS = 1e-6  # keeps normalised masks finite where every mask is zero
MODES: tuple[str, ...] = ("none", "ratio", "wiener")
MaskBlock = Callable[[Any], np.ndarray]  # index into one condition's masks -> that part of its mask
Each = Callable[[Callable[[int], None], int], object]  # (work, n) -> runs work(0), ..., work(n - 1)


def _one_after_another(work: Callable[[int], None], n: int) -> None:
    for i in range(n):
        work(i)


def ratio_masks(masks: np.ndarray, axis: int = 0, power: float = 1.0) -> np.ndarray:
    """masks**power / their sum over `axis` (the instrument axis); same shape, float32."""
    masks = np.asarray(masks, np.float32)
    if power != 1.0:
        masks = masks ** np.float32(power)
    total = masks.sum(axis=axis, keepdims=True) + MASK_EPS * masks.shape[axis]
    return (masks + MASK_EPS) / total


def wiener_estimates(masks: np.ndarray, mixture: np.ndarray, iterations: int = 1) -> np.ndarray:
    """Multichannel Wiener filtering (norbert) of a mixture with the masks' magnitude estimates.

    masks: float [n_instruments, n_groups, n_channels, n_frames, n_freq]; mixture: complex
    [n_groups, n_channels, n_frames, n_freq]. Returns complex64 estimates shaped like masks.
    """
    import norbert

    out = np.empty(masks.shape, np.complex64)
    for g in range(mixture.shape[0]):
        x = np.transpose(mixture[g], (1, 2, 0)).astype(np.complex128)  # [F, freq, ch]
        v = np.transpose(masks[:, g] * np.abs(mixture[g])[None], (2, 3, 1, 0))  # [F, freq, ch, I]
        y = norbert.wiener(
            v.astype(np.float64), x, iterations, use_softmask=False
        )  # [F, freq, ch, I]
        out[:, g] = np.transpose(y, (3, 2, 0, 1))
    return out


@dataclass(frozen=True)
class Postprocess:
    """How a chunk's masks become estimates: `mode` (MODES), `power` (ratio), `iterations` (wiener)."""

    mode: str = "none"
    power: float = 1.0
    iterations: int = 1

    def validate(self) -> Postprocess:
        if self.mode not in MODES:
            raise UserError(f"unknown post-processing '{self.mode}' (valid: {', '.join(MODES)})")
        if not (math.isfinite(self.power) and 0 < self.power <= 4):
            raise UserError(f"ratio power must be in (0, 4], got {self.power}")
        if not 0 <= self.iterations <= 10:
            raise UserError(f"Wiener iterations must be in [0, 10], got {self.iterations}")
        return self

    @property
    def joint(self) -> bool:
        """True when every instrument's mask is needed (the estimates depend on each other)."""
        return self.mode != "none"

    def each_mask(self, masks: np.ndarray, keep: Sequence[int]) -> Iterator[np.ndarray]:
        """The mask each condition in `keep` multiplies the mixture with, one at a time: its own ("none"),
        or normalised over all conditions ("ratio", as `ratio_masks` but never holding more than one
        normalised mask). masks: [n_cond, ...] in any layout. "wiener" estimates are not masks of the
        mixture: use `__call__`."""
        for block in self.mask_blocks(masks, keep):
            yield block(...)

    def mask_blocks(
        self,
        masks: np.ndarray,
        keep: Sequence[int],
        overwrite: bool = False,
        each: Each | None = None,
    ) -> Iterator[MaskBlock]:
        """As `each_mask`, lazily: for each condition in `keep`, a function of an index into masks[c]
        (e.g. a block of frames) returning that part of its mask, so that no normalised mask is built
        whole. "ratio" divides by the sum over conditions, computed once here (as its reciprocal).
        overwrite: the caller gives up `masks` (float32, writable), so a ratio power is applied in
        place rather than to a copy of every mask.
        each: runs work(0), ..., work(n - 1), e.g. on a thread pool (numpy's power releases the GIL), for
        the power of each condition's masks; default: one after another."""
        if self.mode == "wiener":
            raise ValueError(
                "Wiener estimates are not masks; call the Postprocess with the mixture"
            )
        if self.mode == "none":
            for c in keep:
                yield masks[c].__getitem__
            return
        powered = np.asarray(masks, np.float32)
        if self.power != 1.0:
            in_place = overwrite and powered is masks and masks.flags.writeable
            source, power = powered, np.float32(self.power)
            powered = source if in_place else np.empty(source.shape, np.float32)

            def raise_one(c: int) -> None:
                np.power(source[c], power, out=powered[c])

            (each or _one_after_another)(raise_one, source.shape[0])
        scale = powered.sum(axis=0)
        scale += np.float32(MASK_EPS * powered.shape[0])
        np.reciprocal(scale, out=scale)
        eps = np.float32(MASK_EPS)
        for c in keep:

            def block(index: Any, c: int = c) -> np.ndarray:
                part = powered[c][index] + eps
                part *= scale[index]
                return part

            yield block

    def __call__(self, masks: np.ndarray, mixture: np.ndarray) -> np.ndarray:
        """masks float32 [n_cond, n_groups, ch, F, n_freq], mixture complex64 [n_groups, ch, F, n_freq]
        -> complex64 estimates [n_cond, n_groups, ch, F, n_freq]."""
        if self.mode == "ratio":
            masks = ratio_masks(masks, axis=0, power=self.power)
        elif self.mode == "wiener":
            return wiener_estimates(masks, mixture, self.iterations)
        return masks * mixture[None]


def requested_postprocess(mode: str | None, power: float | None) -> str | Postprocess | None:
    """What a caller asked for on the command line: None (the model's own choice), a mode by name (the
    model's own ratio power) or, when a power is given, ratio post-processing with that power."""
    if power is None:
        return mode
    if (mode or "ratio") != "ratio":
        raise UserError(f"--ratio-power applies to ratio post-processing, not '{mode}'")
    return Postprocess("ratio", power).validate()


def model_postprocess(requested: str | Postprocess | None, model: ModelConfig) -> Postprocess:
    """The post-processing a model runs with, validated: `requested` itself, a mode by name with the
    model's `ratio_power`, or (None) the model's own `postprocess` and `ratio_power`."""
    if isinstance(requested, Postprocess):
        return requested.validate()
    return Postprocess(requested or model.postprocess, model.ratio_power).validate()


def with_postprocess(config: Config, postprocess: Postprocess) -> Config:
    """`config` with `postprocess` as its model's default (mode and ratio power), as an export records
    it, so that a Separator over the export combines masks the same way."""
    model = dataclasses.replace(
        config.model, postprocess=postprocess.mode, ratio_power=postprocess.power
    )
    return dataclasses.replace(config, model=model)

"""The per-chunk computation, written once for every engine.

`ChunkSeparator` does with NumPy what every `MaskEngine` shares: STFT (`cunet.dsp`) -> magnitude of
the model's bins, computed once, written straight into the model's layout with the frames padded to
the engine's multiple -> `engine.masks` -> crop -> masks of all conditions post-processed together
(the `cunet.postprocess` step: none, ratio or Wiener) -> top bins filled -> applied to the complex
STFT -> inverse STFT, the last three fused block by block in `dsp.istft` (no full-size masked copy);
and the channel mapping of inputs to the model (mono through a stereo model, stereo through a mono
one).

With `shifts` > 1 the network also runs on the chunk's magnitude rolled by fractions of the U-Net's
time stride (`model.time_multiple` frames), so its pooling grid falls elsewhere; the masks, rolled back,
are averaged before post-processing (test-time augmentation: the network's cost times `shifts`, the DSP's
unchanged).

The inverse transforms of a chunk's outputs run on `threads` threads (NumPy's FFTs and ufuncs release
the GIL): they are most of the work besides the network, and the network's own thread pool is idle
meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from . import dsp
from .engines.base import MaskEngine, cpu_count
from .errors import AudioError, ModelError, UserError, literal
from .postprocess import MaskBlock, Postprocess

T = TypeVar("T")
MAX_SHIFTS = 16


def check_channels(n_channels: int, prefix: str = "") -> None:
    """AudioError unless the input is mono or stereo (what the channel mapping supports)."""
    if n_channels not in (1, 2):
        raise AudioError(
            f"{prefix}{n_channels} channels are not supported; only mono and stereo "
            "(downmix first, e.g. ffmpeg -i in.wav -ac 2 out.wav)"
        )


def check_shifts(shifts: int) -> None:
    """UserError unless shifts is a whole number from 1 to MAX_SHIFTS."""
    if isinstance(shifts, bool) or not isinstance(shifts, int) or not 1 <= shifts <= MAX_SHIFTS:
        raise UserError(
            f"{{shifts}} must be a whole number from 1 to {MAX_SHIFTS}, got {literal(repr(shifts))}",
            names={"shifts": "shifts"},
        )


class ChunkSeparator:
    """Separates waveform chunks with any MaskEngine (see the module docstring for the steps).

    postprocess: how the masks of the chunk's conditions become estimates (`cunet.postprocess`);
    a joint mode needs the conditions of every instrument (the caller passes them, and `outputs`).
    threads: threads for the outputs' inverse transforms (None: the CPUs this process may use; 1: the
    calling thread only). Results do not depend on it.
    shifts: network passes averaged per chunk, 1 to MAX_SHIFTS (see the module docstring).
    """

    def __init__(
        self,
        engine: MaskEngine,
        postprocess: Postprocess | None = None,
        threads: int | None = None,
        shifts: int = 1,
    ) -> None:
        check_shifts(shifts)
        self.engine = engine
        self.audio = engine.config.audio
        self.postprocess = postprocess or Postprocess()
        self.shifts = shifts
        self.threads = cpu_count() if threads is None else max(1, int(threads))
        self._pool: ThreadPoolExecutor | None = None

    def _each(self, work: Callable[[int], T], n: int) -> list[T]:
        """[work(0), ..., work(n - 1)], on the pool when there is more than one of each."""
        if self.threads == 1 or n == 1:
            return [work(i) for i in range(n)]
        if self._pool is None:  # made on first use: an idle ChunkSeparator starts no thread
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="cunet-istft")
        return list(self._pool.map(work, range(n)))

    def _masks(self, magnitude: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        """engine.masks, averaged over `shifts` rolls of the frame axis (rolled back before adding)."""
        masks = self.engine.masks(magnitude, conditions)
        if self.shifts == 1:
            return masks
        total = np.array(masks, np.float32)  # an engine may return a read-only array
        stride = self.engine.config.model.time_multiple
        for k in range(1, self.shifts):
            roll = k * stride // self.shifts or k  # frames; whole frames even for short strides
            rolled = self.engine.masks(np.roll(magnitude, roll, axis=2), conditions)
            total += np.roll(rolled, -roll, axis=3)
        total *= np.float32(1 / self.shifts)
        return total

    def separate_chunk(
        self, waveform: np.ndarray, conditions: np.ndarray, outputs: Sequence[int] | None = None
    ) -> np.ndarray:
        """waveform float32 [n_groups, n_samples, n_channels] (the model's channels), conditions float32
        [n_cond, n_instruments] -> stems float32 [n_out, n_groups, n_samples, n_channels] of the
        conditions `outputs` (default: all), after post-processing the masks of all conditions together."""
        a = self.audio
        n_groups, n_samples, n_channels = waveform.shape
        spec = dsp.stft(
            np.transpose(waveform, (0, 2, 1)), a.n_fft, a.hop_length
        )  # [G, ch, F, freq]
        n_frames = spec.shape[2]
        multiple = self.engine.frame_multiple
        padded = (
            -(-n_frames // multiple) * multiple
        )  # the U-Net needs whole multiples of its stride
        magnitude = np.empty((n_groups, a.n_bins, padded, n_channels), np.float32)  # model layout
        magnitude[:, :, n_frames:] = 0.0
        np.abs(np.transpose(spec[..., : a.n_bins], (0, 3, 2, 1)), out=magnitude[:, :, :n_frames])
        masks = self._masks(magnitude, conditions)[:, :, :, :n_frames]  # [C, G, bins, F, ch]
        del magnitude
        keep = list(range(masks.shape[0])) if outputs is None else list(outputs)
        stems = np.empty((len(keep), n_groups, n_samples, n_channels), np.float32)
        if self.postprocess.mode == "wiener":  # needs every condition's full-band mask at once
            full = dsp.expand_mask_bins(
                np.transpose(masks, (0, 1, 4, 3, 2)), a.n_fft
            )  # [C, G, ch, F, freq]
            estimates = self.postprocess(full, spec)  # complex [C, G, ch, F, freq]

            def invert(i: int) -> None:
                stems[i] = np.transpose(
                    dsp.istft(estimates[keep[i]], n_samples, a.n_fft, a.hop_length), (0, 2, 1)
                )

            self._each(invert, len(keep))
            return stems
        # none / ratio: each output's mask is made a block of frames at a time, inside the inverse STFT
        # the masks are this call's own (an engine's fresh output), so a ratio power may overwrite them
        blocks = list(
            self.postprocess.mask_blocks(
                masks, keep, overwrite=masks.flags.writeable, each=self._each
            )
        )

        def invert_masked(i: int) -> None:
            def mask(frames: slice, block: MaskBlock = blocks[i]) -> np.ndarray:
                return np.transpose(block((slice(None), slice(None), frames)), (0, 3, 2, 1))

            stems[i] = np.transpose(
                dsp.istft(spec, n_samples, a.n_fft, a.hop_length, mask=mask), (0, 2, 1)
            )

        self._each(invert_masked, len(keep))
        return stems  # [C', G, n, ch]

    def __call__(
        self, chunk: np.ndarray, conditions: np.ndarray, outputs: Sequence[int] | None = None
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
        out = self.separate_chunk(
            np.ascontiguousarray(groups, np.float32), conditions, outputs
        )  # [C', G, n, ch]
        if not np.isfinite(
            out
        ).all():  # inputs are checked finite, so the weights are bad (corrupt file?)
            raise ModelError(
                "the model produced NaN or infinite values; its weights may be corrupt"
            )
        if model_ch == n_in:
            return out[:, 0]
        if model_ch == 2:
            return out[:, 0].mean(axis=-1, keepdims=True)
        return np.transpose(out[..., 0], (0, 2, 1))

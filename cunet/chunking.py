"""Chunked processing of long signals with linear cross-fades, in bounded memory.

Scheme (shared with the exported SavedModel, which does the same in-graph):
the signal of n_samples is padded with `overlap` zeros in front and zeros at
the end to `padded_length`; chunk k covers padded[k*hop : k*hop + chunk]
with hop = chunk - overlap. Each processed chunk is weighted by a window
that ramps linearly up over its first `overlap` samples and down over its
last `overlap`, so neighbouring windows sum to one; the result is
padded_output[overlap : overlap + n_samples]. Inputs shorter than a chunk
are processed as one chunk of n_samples + 2 * overlap. Chunk and overlap
lengths in samples come from `cunet.config.ChunkSettings.samples`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np


@dataclass(frozen=True)
class ChunkPlan:
    """Chunk layout of a signal; all lengths in samples (see the module docstring)."""

    n_samples: int
    chunk: int
    overlap: int

    @property
    def hop(self) -> int:
        return self.chunk - self.overlap

    @property
    def n_chunks(self) -> int:
        return 1 + math.ceil(max(0, self.n_samples + 2 * self.overlap - self.chunk) / self.hop)

    @property
    def padded_length(self) -> int:
        return (self.n_chunks - 1) * self.hop + self.chunk


def plan_chunks(n_samples: int, chunk: int, overlap: int) -> ChunkPlan:
    """Chunk layout for n_samples; `chunk` (samples) must be > 2 * `overlap`."""
    if n_samples < 0 or overlap < 0 or chunk <= 2 * overlap:
        raise ValueError(f"invalid chunking: n_samples={n_samples}, chunk={chunk}, overlap={overlap}")
    return ChunkPlan(n_samples, min(chunk, max(n_samples, 1) + 2 * overlap), overlap)


def crossfade_window(chunk: int, overlap: int) -> np.ndarray:
    """float32 [chunk]: linear ramps of `overlap` samples at both ends, ones between."""
    window = np.ones(chunk, np.float32)
    if overlap > 0:
        ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        window[:overlap] = ramp
        window[chunk - overlap:] = ramp[::-1]
    return window


def overlap_add_stream(blocks: Iterable[np.ndarray], plan: ChunkPlan, n_channels: int,
                       process: Callable[[np.ndarray], np.ndarray],
                       on_chunk: Callable[[], None] | None = None) -> Iterator[np.ndarray]:
    """Process a stream of input blocks chunk by chunk and yield finished output blocks.

    blocks: float32 arrays [m, n_channels] in order; their total length should be
        plan.n_samples (extra samples are dropped, missing ones read as zeros).
    process: chunk [plan.chunk, n_channels] -> [n_outputs, plan.chunk, n_out_channels].
    Yields float32 [n_outputs, m, n_out_channels] blocks whose lengths sum to plan.n_samples.
    Memory holds about two chunks, whatever the signal length.
    """
    chunk, hop, overlap, n = plan.chunk, plan.hop, plan.overlap, plan.n_samples
    window = crossfade_window(chunk, overlap)[None, :, None]
    data = np.zeros((overlap, n_channels), np.float32)  # padded signal from position buf_start
    buf_start = 0
    consumed = 0             # real input samples taken so far
    source = iter(blocks)
    exhausted = False
    acc: np.ndarray | None = None
    emitted = 0              # padded position up to which output was emitted

    for k in range(plan.n_chunks):
        start = k * hop
        needed = start + chunk - buf_start
        if data.shape[0] < needed and not exhausted:
            pieces = [data]
            have = data.shape[0]
            while have < needed:
                try:
                    block = np.asarray(next(source), np.float32)
                except StopIteration:
                    exhausted = True
                    break
                block = block[: max(0, n - consumed)]
                consumed += block.shape[0]
                pieces.append(block)
                have += block.shape[0]
            data = np.concatenate(pieces, axis=0)
        local = data[start - buf_start:start - buf_start + chunk]
        if local.shape[0] < chunk:
            local = np.concatenate([local, np.zeros((chunk - local.shape[0], n_channels), np.float32)], axis=0)
        # Drop input that no later chunk needs.
        keep_from = (k + 1) * hop
        data = data[keep_from - buf_start:]
        buf_start = keep_from

        out = np.asarray(process(local), np.float32)
        if not out.flags.writeable or np.may_share_memory(out, data) or np.may_share_memory(out, local):
            out = out.copy()  # weighted in place below: never write into the input
        out *= window
        if acc is not None:  # the previous chunk's tail (a block of it may still be in use: not modified)
            out[:, :acc.shape[1] - hop] += acc[:, hop:]
        acc = out
        if on_chunk is not None:
            on_chunk()
        final = k == plan.n_chunks - 1
        done_until = start + (chunk if final else hop)
        lo, hi = max(emitted, overlap), min(done_until, overlap + n)
        if hi > lo:
            yield acc[:, lo - start:hi - start]
        emitted = done_until

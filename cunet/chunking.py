"""Chunked processing of long signals with linear cross-fades, in bounded memory.

Scheme (shared with the exported SavedModel, which does the same in-graph):
the signal of n_samples is padded with `overlap` zeros in front and zeros at
the end to `padded_length`; chunk k covers padded[k*hop : k*hop + chunk]
with hop = chunk - overlap. Each processed chunk is weighted by a window
that ramps linearly up over its first `overlap` samples and down over its
last `overlap`, so neighbouring windows sum to one; the result is
padded_output[overlap : overlap + n_samples]. Inputs shorter than a chunk
are processed as one chunk of n_samples + 2 * overlap. Chunk and overlap
lengths in samples come from `cunet.settings.ChunkSettings.samples`.

Live audio has no known length: `stream_plan` gives a plan with n_samples None,
and `overlap_add_stream` then learns the length when the input ends. Every chunk
keeps its full length (a short input is not one shorter chunk), so for inputs of
at least chunk - 2 * overlap samples the result equals that of the plan made with
the length known in advance. A sample at padded position p is emitted once chunk
floor(p / hop) is processed, which needs the input up to floor(p / hop) * hop + chunk:
the output lags the input by at most `chunk` samples plus the processing time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .config import AudioConfig, ConfigError
from .settings import ChunkSettings

# A latency is a bound, not a chunk: a larger one is met by the longest chunk it allows (below).
MAX_LATENCY_SECONDS = 600.0
STREAM_OVERLAP = 0.25  # cross-fade of chunks chosen for a latency, as a fraction of the chunk
# The longest chunk a latency picks: the default chunk's memory. A larger latency is a bound that a
# shorter chunk meets too, so memory does not grow with it.
MAX_LATENCY_CHUNK_SECONDS = ChunkSettings().chunk_seconds


def check_latency(latency: float) -> float:
    """`latency` (seconds), or ConfigError if it is not a finite number in (0, MAX_LATENCY_SECONDS]."""
    ok = (
        isinstance(latency, (int, float))
        and not isinstance(latency, bool)
        and math.isfinite(latency)
    )
    if not ok or not 0 < latency <= MAX_LATENCY_SECONDS:
        raise ConfigError(
            f"{{latency}} must be a number of seconds in (0, {MAX_LATENCY_SECONDS:g}], got {latency!r}",
            names={"latency": "latency"},
        )
    return latency


def latency_bound(chunk: int, overlap: int) -> int:
    """The most samples between a sample going into `overlap_add_stream` and coming out processed, when
    each chunk is processed within one hop (which keeping up with real time requires): a sample waits
    for the rest of its chunk (at most `chunk` samples), then for the chunk's processing (< one hop)."""
    return chunk + (chunk - overlap)


def chunks_for_latency(latency: float, audio: AudioConfig, frame_multiple: int) -> ChunkSettings:
    """The longest chunking whose `latency_bound` is at most `latency` seconds, with chunks of at most
    MAX_LATENCY_CHUNK_SECONDS (memory is bounded whatever the latency).

    Chunks are whole multiples of `frame_multiple` STFT frames (the U-Net's stride, or an engine's fixed
    window) once the STFT has padded them (`ChunkSettings.samples`); the cross-fade is STREAM_OVERLAP of
    the chunk. ConfigError if not even one multiple fits, naming the smallest latency possible.
    """
    check_latency(latency)
    best = None
    frames = frame_multiple
    while frames * audio.hop_length <= MAX_LATENCY_CHUNK_SECONDS * audio.sample_rate:
        seconds = frames * audio.hop_length / audio.sample_rate
        chunk = ChunkSettings(seconds, 0.0).samples(audio, frame_multiple)[0]
        overlap = int(chunk * STREAM_OVERLAP)
        if latency_bound(chunk, overlap) > latency * audio.sample_rate:
            break
        best = ChunkSettings(seconds, overlap / audio.sample_rate)
        frames += frame_multiple
    if best is None:
        seconds = frame_multiple * audio.hop_length / audio.sample_rate
        chunk = ChunkSettings(seconds, 0.0).samples(audio, frame_multiple)[0]
        smallest = latency_bound(chunk, int(chunk * STREAM_OVERLAP)) / audio.sample_rate
        raise ConfigError(
            f"{{latency}} {latency:g} s is below this model's smallest, {smallest:.3f} s "
            f"(a chunk of {frame_multiple} STFT frames, {chunk / audio.sample_rate:.3f} s, plus "
            "the time to separate it)",
            names={"latency": "latency"},
        )
    return best


@dataclass(frozen=True)
class ChunkPlan:
    """Chunk layout of a signal; all lengths in samples (see the module docstring).

    n_samples None: a stream of unknown length (`stream_plan`); n_chunks and padded_length need it known.
    """

    n_samples: int | None
    chunk: int
    overlap: int

    @property
    def hop(self) -> int:
        return self.chunk - self.overlap

    @property
    def n_chunks(self) -> int:
        if self.n_samples is None:
            raise ValueError("the number of chunks of a stream of unknown length is not known yet")
        return count_chunks(self.n_samples, self.chunk, self.overlap)

    @property
    def padded_length(self) -> int:
        return (self.n_chunks - 1) * self.hop + self.chunk


def count_chunks(n_samples: int, chunk: int, overlap: int) -> int:
    """Chunks of `chunk` samples, `chunk - overlap` apart, that cover overlap + n_samples + overlap."""
    return 1 + math.ceil(max(0, n_samples + 2 * overlap - chunk) / (chunk - overlap))


def _check(n_samples: int, chunk: int, overlap: int) -> None:
    if n_samples < 0 or overlap < 0 or chunk <= 2 * overlap:
        raise ValueError(
            f"invalid chunking: n_samples={n_samples}, chunk={chunk}, overlap={overlap}"
        )


def plan_chunks(n_samples: int, chunk: int, overlap: int) -> ChunkPlan:
    """Chunk layout for n_samples; `chunk` (samples) must be > 2 * `overlap`."""
    _check(n_samples, chunk, overlap)
    return ChunkPlan(n_samples, min(chunk, max(n_samples, 1) + 2 * overlap), overlap)


def stream_plan(chunk: int, overlap: int) -> ChunkPlan:
    """Chunk layout for a stream whose length is known only when it ends: chunks always `chunk` long."""
    _check(0, chunk, overlap)
    return ChunkPlan(None, chunk, overlap)


def crossfade_window(chunk: int, overlap: int) -> np.ndarray:
    """float32 [chunk]: linear ramps of `overlap` samples at both ends, ones between."""
    window = np.ones(chunk, np.float32)
    if overlap > 0:
        ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        window[:overlap] = ramp
        window[chunk - overlap :] = ramp[::-1]
    return window


def overlap_add_stream(
    blocks: Iterable[np.ndarray],
    plan: ChunkPlan,
    n_channels: int,
    process: Callable[[np.ndarray], np.ndarray],
    on_chunk: Callable[[], None] | None = None,
) -> Iterator[np.ndarray]:
    """Process a stream of input blocks chunk by chunk and yield finished output blocks.

    blocks: float32 arrays [m, n_channels] in order (m >= 0). With plan.n_samples known, their total
        length should be plan.n_samples (extra samples are dropped, missing ones read as zeros); with
        None (`stream_plan`) the stream's own length is used, known when the iterator ends.
    process: chunk [plan.chunk, n_channels] -> [n_outputs, plan.chunk, n_out_channels].
    Yields float32 [n_outputs, m, n_out_channels] blocks, each as soon as the chunk completing it is
    processed, whose lengths sum to the signal's length. Memory holds about two chunks plus one input
    block, whatever the signal length.
    """
    chunk, hop, overlap, n = plan.chunk, plan.hop, plan.overlap, plan.n_samples
    total = None if n is None else plan.n_chunks
    ramp = crossfade_window(chunk, overlap)[None, :overlap, None]  # the window is one in between
    data = np.zeros((overlap, n_channels), np.float32)  # padded signal from position buf_start
    buf_start = 0
    consumed = 0  # real input samples taken so far
    source = iter(blocks)
    exhausted = False
    acc: np.ndarray | None = None
    acc_start = 0  # padded position of acc[:, 0]
    emitted = overlap  # padded position up to which output was emitted
    k = 0
    while total is None or k < total:
        start = k * hop
        needed = start + chunk - buf_start
        if data.shape[0] < needed and not exhausted:
            pieces, have = [data], data.shape[0]
            while have < needed:
                try:
                    block = np.asarray(next(source), np.float32)
                except StopIteration:
                    exhausted = True
                    break
                if n is not None:
                    block = block[: max(0, n - consumed)]
                consumed += block.shape[0]
                pieces.append(block)
                have += block.shape[0]
            data = np.concatenate(pieces, axis=0)
        if exhausted and n is None:  # the stream's length is known now
            n = consumed
            total = count_chunks(n, chunk, overlap) if n else 0
            if k >= total:
                break
        local = data[start - buf_start : start - buf_start + chunk]
        if local.shape[0] < chunk:
            local = np.concatenate(
                [local, np.zeros((chunk - local.shape[0], n_channels), np.float32)], axis=0
            )
        # Drop input that no later chunk needs.
        keep_from = (k + 1) * hop
        data = data[keep_from - buf_start :]
        buf_start = keep_from

        out = np.asarray(process(local), np.float32)
        if (
            not out.flags.writeable
            or np.may_share_memory(out, data)
            or np.may_share_memory(out, local)
        ):
            out = out.copy()  # weighted in place below: never write into the input
        if overlap:  # cross-fade weights in place: only the ramps, the rest is multiplied by one
            out[:, :overlap] *= ramp
            out[:, chunk - overlap :] *= ramp[:, ::-1]
        if (
            acc is not None
        ):  # the previous chunk's tail (a block of it may still be in use: not modified)
            out[:, : acc.shape[1] - hop] += acc[:, hop:]
        acc = out
        acc_start = start
        if on_chunk is not None:
            on_chunk()
        final = total is not None and k == total - 1
        hi = start + (chunk if final else hop)
        if n is not None:
            hi = min(hi, overlap + n)
        if hi > emitted:
            yield acc[:, emitted - start : hi - start]
            emitted = hi
        k += 1
    if (
        acc is not None and n is not None and emitted < overlap + n
    ):  # a stream that ended after its last chunk
        yield acc[:, emitted - acc_start : overlap + n - acc_start]

"""Sample-rate conversion (soxr): whole signals conformed to a rate and channel count (`conform`),
and streams, with the block bookkeeping around them.

Blocks are float32 [m, n_channels] (inputs) or [n_outputs, m, n_channels] (separated outputs).
soxr is imported when a resampler is first used. A resampler delays its output by its filter's
length (a few ms at "HQ"), so streamed audio at a rate other than the model's comes out a little later.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

QUALITY = "HQ"


def conform(
    audio: np.ndarray, rate: float, to_rate: int, n_channels: int | None = None
) -> np.ndarray:
    """float32 [n_samples', channels] at `to_rate` Hz from float [n_samples] or [n_samples, ch] at
    `rate` Hz: the one rate-and-channel conversion of whole signals (training data, evaluation).

    n_channels: None keeps the channels; 1 averages them; more copies one channel to every channel.
    Channels are conformed first when that shrinks the signal, so soxr (HQ) resamples the least.
    ValueError for another mismatch (e.g. 6 channels to 2; callers check first for their message).
    """
    audio = np.asarray(audio, np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    channels = audio.shape[1]
    target = channels if n_channels is None else n_channels
    if channels != target and channels != 1 and target != 1:
        raise ValueError(f"cannot conform {channels} channels to {target}")
    if target == 1 and channels > 1:
        audio = audio.mean(axis=1, keepdims=True)
    if rate != to_rate:
        import soxr

        audio = np.asarray(soxr.resample(audio, rate, to_rate, quality=QUALITY), np.float32)
        audio = audio.reshape(-1, min(channels, target))
    if audio.shape[1] != target:
        audio = np.repeat(audio, target, axis=1)
    return np.ascontiguousarray(audio, np.float32)


def take(blocks: list[np.ndarray], n: int, n_channels: int) -> np.ndarray:
    """Pop the first n samples from a queue of blocks [m, n_channels] (zeros if it runs short)."""
    parts, have = [], 0
    while have < n and blocks:
        b = blocks[0]
        need = n - have
        if b.shape[0] <= need:
            parts.append(blocks.pop(0))
            have += b.shape[0]
        else:
            parts.append(b[:need])
            blocks[0] = b[need:]
            have = n
    if have < n:
        parts.append(np.zeros((n - have, n_channels), np.float32))
    return np.concatenate(parts, axis=0) if parts else np.zeros((0, n_channels), np.float32)


def resample_stream(
    blocks: Iterable[np.ndarray], rate_in: int, rate_out: int, n_channels: int
) -> Iterator[np.ndarray]:
    """Blocks [m, n_channels] at rate_in -> blocks at rate_out (the filter's tail flushed at the end)."""
    import soxr

    stream = soxr.ResampleStream(rate_in, rate_out, n_channels, dtype="float32", quality=QUALITY)
    for block in blocks:
        out = stream.resample_chunk(np.ascontiguousarray(block, np.float32))
        if out.shape[0]:
            yield out.reshape(-1, n_channels)
    out = stream.resample_chunk(np.zeros((0, n_channels), np.float32), last=True)
    if out.shape[0]:
        yield out.reshape(-1, n_channels)


def resample_outputs(
    blocks: Iterable[np.ndarray], rate_in: int, rate_out: int, n_channels: int, n_outputs: int
) -> Iterator[np.ndarray]:
    """Blocks [n_outputs, m, n_channels] at rate_in -> the same at rate_out, one resampler per output."""
    import soxr

    streams = [
        soxr.ResampleStream(rate_in, rate_out, n_channels, dtype="float32", quality=QUALITY)
        for _ in range(n_outputs)
    ]
    pending: list[list[np.ndarray]] = [[] for _ in range(n_outputs)]

    def drain() -> Iterator[np.ndarray]:
        n = min(sum(p.shape[0] for p in q) for q in pending)
        if n:
            yield np.stack([take(q, n, n_channels) for q in pending])

    for block in blocks:
        for i, s in enumerate(streams):
            pending[i].append(
                s.resample_chunk(np.ascontiguousarray(block[i])).reshape(-1, n_channels)
            )
        yield from drain()
    for i, s in enumerate(streams):
        pending[i].append(
            s.resample_chunk(np.zeros((0, n_channels), np.float32), last=True).reshape(
                -1, n_channels
            )
        )
    n = max(sum(p.shape[0] for p in q) for q in pending)
    yield np.stack([take(q, n, n_channels) for q in pending])


def exact_length(
    blocks: Iterable[np.ndarray],
    n_samples: int | Callable[[], int],
    n_outputs: int,
    n_channels: int,
    hold: int = 64,
) -> Iterator[np.ndarray]:
    """Trim or zero-pad a stream of [n_outputs, m, n_channels] blocks to exactly the input's length
    (resampling may be off by a sample or two).

    n_samples: the length; or, for live audio, a function giving the number of input samples read so
    far, called once the blocks end. Then the last `hold` samples are held back until the next block (or
    the end), so a surplus can still be cut without a gap inside the stream.
    """
    done = 0
    if callable(n_samples):
        tail = np.zeros((n_outputs, 0, n_channels), np.float32)
        for block in blocks:
            tail = np.concatenate([tail, block], axis=1) if tail.shape[1] else block
            if tail.shape[1] > hold:
                done += tail.shape[1] - hold
                yield tail[:, : tail.shape[1] - hold]
                tail = tail[:, tail.shape[1] - hold :]
        blocks, n_samples = [tail], n_samples()
    for block in blocks:
        block = block[:, : max(0, n_samples - done)]
        done += block.shape[1]
        if block.shape[1]:
            yield block
    if done < n_samples:
        yield np.zeros((n_outputs, n_samples - done, n_channels), np.float32)

"""Settings of a separation run that are not part of a model: `ChunkSettings`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .config import AudioConfig
from .errors import ConfigError

__all__ = ["MAX_CHUNK_SECONDS", "ChunkSettings"]

# Peak memory grows with the chunk: about 26 MB per second of chunk with the shipped model on LiteRT
# (64 MB with Wiener post-processing), so 30 s stays near 1 GB (2 GB with Wiener).
MAX_CHUNK_SECONDS = 30.0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class ChunkSettings:
    """How long signals are cut for processing (see `cunet.chunking`), in seconds.

    chunk_seconds: length of one processing chunk (memory grows with it), in (0, MAX_CHUNK_SECONDS].
    overlap_seconds: linear cross-fade between neighbouring chunks, in [0, chunk_seconds / 2).
    """

    chunk_seconds: float = 10.0
    overlap_seconds: float = 1.0

    def __post_init__(self) -> None:
        """ConfigError (NaN, infinite, out of range) naming the field: settings are valid once built."""
        c, o = self.chunk_seconds, self.overlap_seconds
        if not _is_number(c) or not 0 < c <= MAX_CHUNK_SECONDS:
            raise ConfigError(
                f"chunk length ({{chunk_seconds}}) must be a number of seconds in "
                f"(0, {MAX_CHUNK_SECONDS:g}], got {c!r}",
                names={"chunk_seconds": "chunk_seconds"},
            )
        if not _is_number(o) or not 0 <= o < c / 2:
            raise ConfigError(
                f"overlap ({{overlap_seconds}}) must be a number of seconds in "
                f"[0, chunk/2) = [0, {c / 2:g}), got {o!r}",
                names={"overlap_seconds": "overlap_seconds"},
            )

    def samples(self, audio: AudioConfig, time_multiple: int) -> tuple[int, int]:
        """(chunk, overlap) in samples for a model with `audio` settings.

        The chunk is chosen so its STFT (`cunet.dsp.stft`) has a whole multiple of `time_multiple`
        frames; the overlap is capped below half a chunk.
        """
        m = time_multiple
        frames = max(
            m, int(round(self.chunk_seconds * audio.sample_rate / audio.hop_length / m)) * m
        )
        extra = (
            audio.n_fft - 2 * audio.hop_length
        ) // audio.hop_length + 1  # frames added by the STFT padding
        chunk = max(1, frames - extra) * audio.hop_length
        overlap = min(int(round(self.overlap_seconds * audio.sample_rate)), (chunk - 1) // 2)
        return chunk, overlap

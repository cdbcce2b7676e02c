"""Live separation: audio read from a pipe is separated and written out as it arrives, its latency measured.

Latency here is the time from a sample's arrival (when cunet read it from its input, so the pipe's own
buffering is not counted) to the moment the separated sample was written out. It is measured for the
first sample of every written block, the one that waited longest. Input is read by a background
thread (`read_ahead`), so the pipe is drained while a chunk is being separated and arrival times are
true. `Separator.latency_seconds` is the bound these measurements must stay under while separation keeps
up with real time (each chunk separated within one hop).
"""

from __future__ import annotations

import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .separator import Separator

_DONE = object()


def read_ahead(
    blocks: Iterable[np.ndarray],
    max_blocks: int = 256,
    clock: Callable[[], float] = time.perf_counter,
) -> Generator[tuple[float, np.ndarray], None, None]:
    """(arrival time, block) pairs of `blocks`, read by a background thread up to `max_blocks` ahead
    (bounded memory). An exception raised while reading is raised here, in the consumer's thread."""
    q: queue.Queue = queue.Queue(max_blocks)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        try:
            for block in blocks:
                if not put((clock(), block)):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(exc)

    thread = threading.Thread(target=reader, name="cunet-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


@dataclass
class StreamClock:
    """Arrival times of input samples, latencies of output blocks and separation times of chunks (seconds)."""

    clock: Callable[[], float] = time.perf_counter
    latencies: list[float] = field(default_factory=list)
    compute: list[float] = field(default_factory=list)
    n_in: int = 0
    n_out: int = 0
    _arrivals: deque = field(default_factory=deque)  # (input samples so far, arrival time)
    _busy_since: float = 0.0

    def feed(self, stamped: Iterable[tuple[float, np.ndarray]]) -> Iterator[np.ndarray]:
        """The blocks of (arrival time, block) pairs, their arrivals recorded."""
        for arrived, block in stamped:
            self.n_in += len(block)
            self._arrivals.append((self.n_in, arrived))
            self._busy_since = self.clock()
            yield block

    def chunk_done(self) -> None:
        """Call when a chunk is separated: its time counts from the last block it waited for."""
        now = self.clock()
        self.compute.append(now - self._busy_since)
        self._busy_since = now

    def written(self, n: int) -> None:
        """Call once a block of n output samples is written: records the latency of its first sample."""
        now = self.clock()
        while self._arrivals and self._arrivals[0][0] <= self.n_out:
            self._arrivals.popleft()
        if self._arrivals:
            self.latencies.append(now - self._arrivals[0][1])
        self.n_out += n
        self._busy_since = max(self._busy_since, now)


@dataclass(frozen=True)
class StreamReport:
    """What a live run measured; times in seconds."""

    sample_rate: int
    n_samples: int
    chunk: float
    overlap: float
    bound: float
    latencies: tuple[float, ...]
    compute: tuple[float, ...]
    n_clipped: int = 0

    @property
    def real_time_factor(self) -> float:
        """Separation time over audio time (below 1: keeps up with real time)."""
        return sum(self.compute) / max(self.n_samples / self.sample_rate, 1e-9)

    def line(self) -> str:
        hop = self.chunk - self.overlap
        parts = [
            f"stream: {self.n_samples / self.sample_rate:.1f} s separated in chunks of {self.chunk:.3f} s "
            f"(cross-fade {self.overlap:.3f} s); latency bound {self.bound:.3f} s"
        ]
        if self.latencies:
            parts.append(
                f"measured median {statistics.median(self.latencies):.3f} s, max {max(self.latencies):.3f} s"
            )
        if self.compute:
            parts.append(
                f"{1000 * statistics.median(self.compute):.0f} ms to separate a chunk (due within "
                f"{hop:.3f} s); real-time factor {self.real_time_factor:.2f}"
            )
            if max(self.compute) > hop:
                parts.append(f"{sum(c > hop for c in self.compute)} chunk(s) fell behind real time")
        if self.n_clipped:
            parts.append(f"{self.n_clipped} samples clamped")
        return "; ".join(parts)


def stream_separate(
    separator: Separator,
    stamped: Iterable[tuple[float, np.ndarray]],
    sample_rate: int,
    n_channels: int,
    instruments: Sequence[str] | None,
    write: Callable[[np.ndarray], None],
    clock: StreamClock | None = None,
) -> StreamReport:
    """Separate (arrival time, block [m, n_channels]) pairs of unknown total length as they come, handing
    each separated block [n_instruments, m', n_channels] to `write` at once; returns what was measured.
    The engine is warmed up first (`Separator.warm_up`), before the first block is read."""
    clock = clock or StreamClock()
    separator.warm_up(n_channels, instruments)
    for out in separator.stream(
        clock.feed(stamped),
        sample_rate,
        instruments,
        n_channels=n_channels,
        on_chunk=clock.chunk_done,
    ):
        write(out)
        clock.written(out.shape[1])
    rate = separator.sample_rate
    return StreamReport(
        sample_rate,
        clock.n_in,
        separator.chunk / rate,
        separator.overlap / rate,
        separator.latency_seconds,
        tuple(clock.latencies),
        tuple(clock.compute),
    )

"""Live separation: reading ahead in a thread, latency bookkeeping, and a paced stream through the tiny model
whose output equals the offline separation and whose measured latency stays under the bound."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from conftest import synth_mixture

from cunet.errors import AudioError
from cunet.live import StreamClock, StreamReport, read_ahead, stream_separate


def test_read_ahead_keeps_order_and_raises_in_the_consumer() -> None:
    blocks = [np.full((3, 1), i, np.float32) for i in range(50)]
    got = [b for _, b in read_ahead(iter(blocks), max_blocks=4)]
    assert [int(b[0, 0]) for b in got] == list(range(50))

    def failing():
        yield np.zeros((2, 1), np.float32)
        raise AudioError("stdin: the stream ended early")

    with pytest.raises(AudioError, match="ended early"):
        list(read_ahead(failing()))


def test_read_ahead_stops_its_thread_when_the_consumer_stops() -> None:
    def endless():
        while True:
            yield np.zeros((1, 1), np.float32)

    stamped = read_ahead(endless(), max_blocks=2)
    next(stamped)
    stamped.close()
    deadline = time.monotonic() + 5
    while (
        any(t.name == "cunet-read-ahead" for t in threading.enumerate())
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert not any(t.name == "cunet-read-ahead" for t in threading.enumerate())


def test_stream_clock_latency_is_from_arrival_of_the_first_sample_written() -> None:
    now = [0.0]
    clock = StreamClock(clock=lambda: now[0])
    stamped = [(0.0, np.zeros((100, 1))), (1.0, np.zeros((100, 1))), (2.0, np.zeros((100, 1)))]
    feed = clock.feed(stamped)
    next(feed)
    now[0] = 1.0
    next(feed)  # 200 samples in at 1.0 s; the chunk takes 0.25 s
    now[0] = 1.25
    clock.chunk_done()
    clock.written(150)  # samples 0..149: the first arrived at 0.0
    now[0] = 2.0
    next(feed)
    now[0] = 2.5
    clock.chunk_done()
    clock.written(150)  # samples 150..299: the first arrived at 1.0
    assert clock.latencies == [1.25, 1.5] and clock.compute == [0.25, 0.5]
    report = StreamReport(100, 300, 0.5, 0.1, 1.0, tuple(clock.latencies), tuple(clock.compute))
    assert report.real_time_factor == pytest.approx(0.25)
    assert (
        "measured median 1.375 s, max 1.500 s" in report.line() and "fell behind" in report.line()
    )


def test_paced_stream_matches_offline_and_stays_under_the_bound(tiny_model_path) -> None:
    """Blocks of 1000 samples arrive in real time; what comes out equals `separate` with the same chunking."""
    from cunet.separator import Separator

    sep = Separator.from_pretrained(tiny_model_path, latency=0.4)
    x = synth_mixture(1.5, seed=3)
    rate = sep.sample_rate

    def paced():
        start = time.perf_counter()
        for i in range(0, x.shape[0], 1000):
            delay = start + (i + 1000) / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            yield x[i : i + 1000]

    outputs: list[np.ndarray] = []
    report = stream_separate(sep, read_ahead(paced()), rate, 2, ["vocals", "bass"], outputs.append)
    y = np.concatenate(outputs, axis=1)
    offline = sep.separate(x, rate, ["vocals", "bass"])
    np.testing.assert_allclose(y[0], offline["vocals"], atol=1e-5)
    np.testing.assert_allclose(y[1], offline["bass"], atol=1e-5)
    assert report.n_samples == x.shape[0] and report.bound == sep.latency_seconds <= 0.4
    assert len(report.compute) >= 3 and len(report.latencies) >= 3
    # A loaded test machine may be slow; the bound holds whenever each chunk was separated within its hop.
    if max(report.compute) < report.chunk - report.overlap:
        assert max(report.latencies) <= report.bound + 0.05

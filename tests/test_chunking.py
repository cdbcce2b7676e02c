"""Properties of chunk planning and streaming overlap-add (hypothesis): lengths are kept, nothing turns NaN,
an identity process gives back its input exactly, and memory stays bounded by the chunk size."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cunet.chunking import (
    ChunkPlan,
    check_latency,
    chunks_for_latency,
    crossfade_window,
    latency_bound,
    overlap_add_stream,
    plan_chunks,
    stream_plan,
)
from cunet.config import AudioConfig, ConfigError
from cunet.settings import ChunkSettings

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def plans(draw: st.DrawFn, max_samples: int = 3000) -> ChunkPlan:
    """A random valid chunk plan, including inputs shorter than one chunk and zero overlap."""
    overlap = draw(st.integers(0, 64))
    chunk = draw(st.integers(2 * overlap + 1, 2 * overlap + 400))
    n = draw(st.integers(0, max_samples))
    return plan_chunks(n, chunk, overlap)


def _split(x: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """x cut into consecutive blocks of the given sizes (cycled; 0-size blocks allowed)."""
    blocks, pos, i = [], 0, 0
    while pos < x.shape[0]:
        size = sizes[i % len(sizes)]
        blocks.append(x[pos : pos + size])
        pos += size
        i += 1
    return blocks


@SETTINGS
@given(plan=plans())
def test_plan_covers_signal_and_both_fades(plan: ChunkPlan) -> None:
    """The padded chunks cover `overlap` lead-in, the signal and `overlap` lead-out, with hop > 0."""
    assert plan.hop > 0 and plan.n_chunks >= 1
    assert plan.chunk > 2 * plan.overlap
    assert plan.padded_length >= plan.n_samples + 2 * plan.overlap
    # No chunk more than needed: without the last one the signal would not be covered.
    assert (
        plan.n_chunks - 2
    ) * plan.hop + plan.chunk < plan.n_samples + 2 * plan.overlap or plan.n_chunks == 1


@SETTINGS
@given(plan=plans())
def test_windows_sum_to_one_over_the_signal(plan: ChunkPlan) -> None:
    window = crossfade_window(plan.chunk, plan.overlap)
    assert window.shape == (plan.chunk,) and np.all(window > 0) and np.all(window <= 1)
    total = np.zeros(plan.padded_length, np.float64)
    for k in range(plan.n_chunks):
        total[k * plan.hop : k * plan.hop + plan.chunk] += window
    signal = total[plan.overlap : plan.overlap + plan.n_samples]
    np.testing.assert_allclose(signal, 1.0, atol=1e-6)


@SETTINGS
@given(
    plan=plans(),
    n_channels=st.integers(1, 3),
    sizes=st.lists(st.integers(0, 700), min_size=1, max_size=5).filter(lambda s: any(s)),
    seed=st.integers(0, 2**16),
)
def test_identity_process_returns_input(
    plan: ChunkPlan, n_channels: int, sizes: list[int], seed: int
) -> None:
    """Whatever the block sizes of the input stream, identity chunks overlap-add back to the input."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (plan.n_samples, n_channels)).astype(np.float32)
    calls: list[tuple[int, ...]] = []

    def process(chunk: np.ndarray) -> np.ndarray:
        calls.append(chunk.shape)
        return np.stack([chunk, 2 * chunk])  # two outputs: x and 2x

    out = list(overlap_add_stream(_split(x, sizes), plan, n_channels, process))
    assert (
        calls == [(plan.chunk, n_channels)] * plan.n_chunks
    )  # bounded memory: one chunk at a time
    y = np.concatenate(out, axis=1) if out else np.zeros((2, 0, n_channels), np.float32)
    assert y.shape == (2, plan.n_samples, n_channels) and y.dtype == np.float32
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y[0], x, atol=2e-6)
    np.testing.assert_allclose(y[1], 2 * x, atol=4e-6)


@SETTINGS
@given(plan=plans(), n_channels=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_a_process_returning_views_of_its_input_leaves_the_input_alone(
    plan: ChunkPlan, n_channels: int, seed: int
) -> None:
    """Chunks are weighted in place: a process that returns a view of its chunk must not see it changed."""
    x = np.random.default_rng(seed).uniform(-1, 1, (plan.n_samples, n_channels)).astype(np.float32)
    given = x.copy()
    out = list(overlap_add_stream([given], plan, n_channels, lambda c: c[None]))
    y = np.concatenate(out, axis=1) if out else np.zeros((1, 0, n_channels), np.float32)
    np.testing.assert_array_equal(given, x)
    np.testing.assert_allclose(y[0], x, atol=2e-6)


@SETTINGS
@given(plan=plans(), delta=st.integers(-500, 500), n_channels=st.integers(1, 2))
def test_stream_length_is_the_plan_length(plan: ChunkPlan, delta: int, n_channels: int) -> None:
    """A stream shorter than planned reads zeros, a longer one is cut: output length is always n_samples."""
    n_given = max(0, plan.n_samples + delta)
    x = np.ones((n_given, n_channels), np.float32)
    out = list(overlap_add_stream([x], plan, n_channels, lambda c: c[None]))
    y = np.concatenate(out, axis=1) if out else np.zeros((1, 0, n_channels), np.float32)
    assert y.shape == (1, plan.n_samples, n_channels) and np.isfinite(y).all()
    m = min(n_given, plan.n_samples)
    np.testing.assert_allclose(y[0, :m], 1.0, atol=2e-6)
    np.testing.assert_allclose(y[0, m:], 0.0, atol=2e-6)


def _chunk_mean(chunk: np.ndarray) -> np.ndarray:
    """A process whose output depends on the whole chunk, so equal outputs mean equal chunk boundaries."""
    return (chunk + chunk.mean(axis=0, keepdims=True))[None]


@SETTINGS
@given(
    plan=plans(),
    extra=st.integers(0, 2000),
    n_channels=st.integers(1, 2),
    sizes=st.lists(st.integers(0, 700), min_size=1, max_size=5).filter(lambda s: any(s)),
    seed=st.integers(0, 2**16),
)
def test_unknown_length_stream_equals_the_known_plan(
    plan: ChunkPlan, extra: int, n_channels: int, sizes: list[int], seed: int
) -> None:
    """A stream whose length is learnt at its end gives what the plan made with the length gives, for any
    input at least chunk - 2 * overlap long; shorter ones keep their length."""
    n = max(0, plan.chunk - 2 * plan.overlap) + extra if extra % 3 else extra // 3
    x = np.random.default_rng(seed).uniform(-1, 1, (n, n_channels)).astype(np.float32)
    live = list(
        overlap_add_stream(
            _split(x, sizes), stream_plan(plan.chunk, plan.overlap), n_channels, _chunk_mean
        )
    )
    y = np.concatenate(live, axis=1) if live else np.zeros((1, 0, n_channels), np.float32)
    assert y.shape == (1, n, n_channels) and np.isfinite(y).all()
    if n >= plan.chunk - 2 * plan.overlap:
        known = np.concatenate(
            list(
                overlap_add_stream(
                    [x], plan_chunks(n, plan.chunk, plan.overlap), n_channels, _chunk_mean
                )
            ),
            axis=1,
        )
        np.testing.assert_allclose(y, known, atol=1e-5)


@SETTINGS
@given(plan=plans(), sizes=st.lists(st.integers(1, 500), min_size=1, max_size=5))
def test_output_lags_input_by_at_most_one_chunk(plan: ChunkPlan, sizes: list[int]) -> None:
    """When output sample j is yielded, the input read so far ends before j + chunk (+ the block that crossed)."""
    n = plan.n_samples
    x = np.zeros((n, 1), np.float32)
    read = [0]

    def source():
        for block in _split(x, sizes):
            read[0] += block.shape[0]
            yield block

    written = 0
    for out in overlap_add_stream(
        source(), stream_plan(plan.chunk, plan.overlap), 1, lambda c: c[None]
    ):
        if read[0] < n:  # before the end of the input
            assert read[0] - written <= plan.chunk + max(sizes)
        written += out.shape[1]
    assert written == n
    assert latency_bound(plan.chunk, plan.overlap) == 2 * plan.chunk - plan.overlap


def test_stream_plan_has_no_chunk_count() -> None:
    plan = stream_plan(100, 10)
    assert plan.hop == 90 and plan.n_samples is None
    with pytest.raises(ValueError, match="unknown length"):
        _ = plan.n_chunks
    assert list(overlap_add_stream([], plan, 2, lambda c: c[None])) == []


def test_chunks_for_latency() -> None:
    """Chunks of whole 64-frame multiples once STFT-padded, a quarter cross-fade, the bound within the latency."""
    audio = AudioConfig()  # 44.1 kHz, n_fft 2048, hop 512
    for latency, frames in [(1.24, 64), (2.5, 64), (2.6, 128), (9.1, 448)]:
        settings = chunks_for_latency(latency, audio, 64)
        chunk, overlap = settings.samples(audio, 64)
        assert chunk == (frames - 3) * 512 and overlap == chunk // 4
        assert latency_bound(chunk, overlap) <= latency * audio.sample_rate
    with pytest.raises(
        ConfigError, match=r"below this model's smallest, 1\.239 s \(a chunk of 64 STFT frames"
    ):
        chunks_for_latency(1.0, audio, 64)
    for bad in (0.0, -1.0, float("nan"), float("inf"), 1e6, True):
        with pytest.raises(ConfigError, match="latency"):
            check_latency(bad)


@pytest.mark.parametrize(
    "n_samples,chunk,overlap", [(-1, 10, 2), (10, 4, 2), (10, 10, -1), (10, 0, 0)]
)
def test_invalid_plans_are_refused(n_samples: int, chunk: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="invalid chunking"):
        plan_chunks(n_samples, chunk, overlap)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    n_samples=st.integers(1, 30000),
    n_channels=st.integers(1, 2),
    rate=st.sampled_from([8000, 22050, 44100, 48000, 96000]),
    seed=st.integers(0, 2**16),
)
def test_separator_identity_mask_keeps_length_and_signal(
    tiny_separator, n_samples: int, n_channels: int, rate: int, seed: int
) -> None:
    """Through STFT, chunking, resampling and back with a mask of ones: the input's shape comes back, finite;
    at the model's own rate the signal itself comes back."""
    from conftest import OnesEngine

    from cunet.separator import Separator

    sep = Separator(OnesEngine(tiny_separator.config), chunks=ChunkSettings(0.2, 0.05))
    x = np.random.default_rng(seed).uniform(-0.5, 0.5, (n_samples, n_channels)).astype(np.float32)
    y = sep.separate(x, rate, ["vocals"])["vocals"]
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    if rate == sep.sample_rate:
        np.testing.assert_allclose(y, x, atol=1e-4)

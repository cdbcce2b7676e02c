"""Streaming resampling and block bookkeeping: queues, lengths made exact, live streams held back a little."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cunet.io.resample import exact_length, resample_outputs, resample_stream, take


def test_take_pops_and_pads() -> None:
    queue = [np.arange(3, dtype=np.float32)[:, None], np.arange(3, 7, dtype=np.float32)[:, None]]
    np.testing.assert_array_equal(take(queue, 4, 1)[:, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(take(queue, 5, 1)[:, 0], [4, 5, 6, 0, 0])
    assert queue == [] and take(queue, 0, 1).shape == (0, 1)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 300), min_size=0, max_size=8),
    target=st.integers(0, 1500),
    live=st.booleans(),
    hold=st.integers(0, 100),
)
def test_exact_length(sizes: list[int], target: int, live: bool, hold: int) -> None:
    """Known length: any surplus or shortfall; live: a surplus of at most `hold` samples (resamplers are
    off by one or two)."""
    blocks = [np.full((2, n, 1), i, np.float32) for i, n in enumerate(sizes)]
    if live:
        target = max(target, sum(sizes) - hold)
    out = list(exact_length(blocks, (lambda: target) if live else target, 2, 1, hold=hold))
    y = np.concatenate(out, axis=1) if out else np.zeros((2, 0, 1), np.float32)
    assert y.shape == (2, target, 1)
    src = np.concatenate(blocks, axis=1) if blocks else np.zeros((2, 0, 1), np.float32)
    m = min(target, src.shape[1])
    np.testing.assert_array_equal(y[:, :m], src[:, :m])
    assert not y[:, m:].any()


def test_live_exact_length_holds_back_only_a_few_samples() -> None:
    """Each block is passed on at once but for the last `hold` samples (cut or padded at the end)."""
    seen = []

    def blocks():
        for _i in range(5):
            yield np.ones((1, 1000, 2), np.float32)
            seen.append(sum(o.shape[1] for o in out))

    out: list[np.ndarray] = []
    for block in exact_length(blocks(), lambda: 4990, 1, 2, hold=64):
        out.append(block)
    assert seen == [936, 1936, 2936, 3936, 4936]
    assert sum(o.shape[1] for o in out) == 4990


@pytest.mark.parametrize("rate_in,rate_out", [(48000, 44100), (22050, 44100)])
def test_resampling_streams_keep_the_ratio(rate_in: int, rate_out: int) -> None:
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (rate_in, 2)).astype(np.float32)
    y = np.concatenate(list(resample_stream([x[:1000], x[1000:]], rate_in, rate_out, 2)))
    assert abs(y.shape[0] - rate_out) <= 2
    outs = np.concatenate(
        list(resample_outputs([np.stack([y, 2 * y])], rate_out, rate_in, 2, 2)), axis=1
    )
    assert abs(outs.shape[1] - rate_in) <= 2
    np.testing.assert_allclose(outs[1], 2 * outs[0], atol=1e-5)


def test_conform_rate_and_channels() -> None:
    """One conversion for whole signals: rate by soxr, channels averaged or copied."""
    from cunet.io.resample import conform

    rng = np.random.default_rng(0)
    stereo = rng.standard_normal((4410, 2)).astype(np.float32)
    assert conform(stereo, 44100, 22050).shape == (2205, 2)
    mono = conform(stereo, 44100, 44100, 1)
    np.testing.assert_allclose(mono[:, 0], stereo.mean(axis=1), rtol=1e-6)
    copied = conform(stereo[:, 0], 44100, 22050, 2)
    assert copied.shape == (2205, 2) and np.array_equal(copied[:, 0], copied[:, 1])
    np.testing.assert_allclose(
        conform(stereo, 44100, 22050, 1), conform(mono, 44100, 22050), atol=1e-6
    )
    with pytest.raises(ValueError, match="cannot conform 3 channels to 2"):
        conform(np.zeros((10, 3), np.float32), 44100, 44100, 2)

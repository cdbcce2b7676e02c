"""cunet.postprocess: combining the masks of all instruments into estimates."""

from __future__ import annotations

import numpy as np
import pytest

from cunet.errors import UserError
from cunet.postprocess import (
    MODES,
    Postprocess,
    ratio_masks,
    requested_postprocess,
    wiener_estimates,
)


def random_case(seed: int = 0, n_inst: int = 4):
    rng = np.random.default_rng(seed)
    masks = rng.uniform(0, 1, (n_inst, 1, 2, 6, 9)).astype(np.float32)  # [I, G, ch, F, freq]
    mixture = (rng.standard_normal((1, 2, 6, 9)) + 1j * rng.standard_normal((1, 2, 6, 9))).astype(
        np.complex64
    )
    return masks, mixture


def test_ratio_masks_sum_to_one_and_keep_proportions():
    masks, _ = random_case()
    ratio = ratio_masks(masks, axis=0)
    np.testing.assert_allclose(ratio.sum(axis=0), 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        ratio[0] / ratio[1], (masks[0] + 1e-6) / (masks[1] + 1e-6), rtol=1e-4
    )
    squared = ratio_masks(masks, axis=0, power=2.0)
    np.testing.assert_allclose(squared[2], masks[2] ** 2 / (masks**2).sum(0), rtol=1e-3, atol=1e-5)
    zeros = ratio_masks(np.zeros((4, 3)), axis=0)
    np.testing.assert_allclose(zeros, 0.25)  # nothing estimated anywhere: an even share, never NaN


@pytest.mark.parametrize("mode", MODES)
def test_modes_shapes_and_mixture_consistency(mode):
    masks, mixture = random_case(1)
    estimates = Postprocess(mode)(masks, mixture)
    assert estimates.shape == masks.shape and np.iscomplexobj(estimates)
    if mode == "none":
        np.testing.assert_allclose(estimates, masks * mixture[None], rtol=1e-6)
        assert not Postprocess(mode).joint
    else:  # ratio and Wiener estimates add up to the mixture
        np.testing.assert_allclose(estimates.sum(axis=0), mixture, atol=1e-4)
        assert Postprocess(mode).joint


def test_wiener_follows_the_magnitude_estimates():
    """One source holding all the energy gets (nearly) the whole mixture."""
    masks, mixture = random_case(2)
    masks[:] = 1e-4
    masks[1] = 1.0
    estimates = wiener_estimates(masks, mixture, iterations=1)
    np.testing.assert_allclose(estimates[1], mixture, atol=1e-2)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(mode="median"), "unknown post-processing 'median'"),
        (dict(mode="ratio", power=0.0), "ratio power"),
        (dict(mode="ratio", power=float("nan")), "ratio power"),
        (dict(mode="wiener", iterations=-1), "Wiener iterations"),
    ],
)
def test_bad_settings_are_one_line_user_errors(settings, message):
    with pytest.raises(UserError, match=message):
        Postprocess(**settings).validate()


@pytest.mark.parametrize("mode,power", [("none", 1.0), ("ratio", 1.0), ("ratio", 2.0)])
def test_each_mask_gives_the_masks_one_at_a_time(mode: str, power: float) -> None:
    masks = np.random.default_rng(3).uniform(0, 1, (4, 2, 5, 7, 2)).astype(np.float32)
    post = Postprocess(mode, power)
    got = list(post.each_mask(masks, [3, 1]))
    want = ratio_masks(masks, axis=0, power=power) if mode == "ratio" else masks
    assert len(got) == 2 and all(g.dtype == np.float32 for g in got)
    np.testing.assert_allclose(got[0], want[3], rtol=1e-6)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
    with pytest.raises(ValueError, match="not masks"):
        list(Postprocess("wiener").each_mask(masks, [0]))


def test_mask_blocks_power_in_place_only_when_the_caller_gives_the_masks_up() -> None:
    masks = np.random.default_rng(4).uniform(0, 1, (4, 1, 3, 6, 2)).astype(np.float32)
    want = ratio_masks(masks, axis=0, power=0.75)
    post = Postprocess("ratio", 0.75)
    kept = masks.copy()
    got = [block(...) for block in post.mask_blocks(kept, [0, 2])]
    np.testing.assert_array_equal(kept, masks)  # not given up: left as it was
    read_only = masks.copy()
    read_only.flags.writeable = False
    given = masks.copy()
    for owned in (given, read_only):
        blocks = [block(...) for block in post.mask_blocks(owned, [0, 2], overwrite=True)]
        for g, b, c in zip(got, blocks, [0, 2], strict=True):
            np.testing.assert_allclose(b, want[c], rtol=1e-6)
            np.testing.assert_array_equal(g, b)
    np.testing.assert_allclose(given, masks**0.75, rtol=1e-6)  # given up: powered in place
    np.testing.assert_array_equal(read_only, masks)  # read-only arrays are never written
    calls = []

    def each(work, n):  # a stand-in for a thread pool's map
        calls.append(n)
        return [work(i) for i in reversed(range(n))]

    pooled = [block(...) for block in post.mask_blocks(masks.copy(), [0, 2], each=each)]
    assert calls == [4]
    for g, b in zip(got, pooled, strict=True):
        np.testing.assert_array_equal(g, b)


def test_requested_postprocess_leaves_the_power_to_the_model_unless_given():
    assert requested_postprocess(None, None) is None  # the model's mode and power
    assert requested_postprocess("ratio", None) == "ratio"  # by name: the model's power
    assert requested_postprocess(None, 0.5) == Postprocess("ratio", 0.5)  # a power means ratio
    assert requested_postprocess("ratio", 2.0) == Postprocess("ratio", 2.0)
    with pytest.raises(UserError, match="applies to ratio post-processing, not 'wiener'"):
        requested_postprocess("wiener", 0.5)
    with pytest.raises(UserError, match="ratio power"):
        requested_postprocess(None, 0.0)

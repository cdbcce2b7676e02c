"""cunet.data.sampler: PatchSampler augmentation, conditions, pools and joint batches; validation patches.

Most tests run on synthetic cached STFTs with known values (no audio, no TensorFlow): stem s,
channel c of track t is the positive real constant 2**s * (c + 1) * (1 + 0.1 t), so mixture and
target magnitudes reveal which stems, gains, swaps and tracks were used. A few run on the
synthetic MUSDB18 root, cached once per session (`musdb_cache` in conftest.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conftest import config_sampler

from cunet.data import CachedTrack, PatchSampler, track_key, validation_batches
from cunet.errors import DataError

INSTRUMENTS = ("vocals", "drums", "bass", "other")
N_BINS, N_FRAMES, N_SPEC_FRAMES = 8, 4, 12
NO_AUGMENTATION = dict(
    remix_probability=0.0,
    gain_range=(1.0, 1.0),
    channel_swap_probability=0.0,
    progressive_probability=0.0,
    multi_hot_probability=0.0,
    zero_condition_probability=0.0,
)


def stem_value(s: int, c: int, t: int) -> float:
    return 2.0**s * (c + 1) * (1 + 0.1 * t)


def cached_track(
    root: Path,
    name: str,
    stems: dict[str, np.ndarray],
    n_frames: int,
    silent=(),
    weight: float = 1.0,
) -> CachedTrack:
    """A CachedTrack over arrays complex [ch, n_frames, bins] written as the cache writes them."""
    folder = root / track_key(name)
    folder.mkdir(parents=True, exist_ok=True)
    for inst, spec in stems.items():
        np.save(folder / f"{track_key(inst)}.npy", spec.astype(np.complex64))
    return CachedTrack(name, folder, tuple(sorted(stems)), frozenset(silent), n_frames, weight)


def constant_track(
    root: Path,
    t: int,
    instruments=INSTRUMENTS,
    n_frames: int = N_SPEC_FRAMES,
    channels: int = 2,
    bins: int = N_BINS,
    **kwargs,
) -> CachedTrack:
    """Track t holding `instruments`, each the constant stem_value(s, c, t)."""
    stems = {}
    for inst in instruments:
        s = INSTRUMENTS.index(inst)
        stems[inst] = np.stack(
            [np.full((n_frames, bins), stem_value(s, c, t)) for c in range(channels)]
        )
    return cached_track(
        root,
        f"t{t}-{'-'.join(instruments)}-{n_frames}-{channels}-{bins}",
        stems,
        n_frames,
        **kwargs,
    )


def random_track(root: Path, seed: int, n_frames: int = N_SPEC_FRAMES) -> CachedTrack:
    """Four stems of random complex values (random phases)."""
    rng = np.random.default_rng(seed)
    stems = {
        inst: rng.standard_normal((2, n_frames, N_BINS))
        + 1j * rng.standard_normal((2, n_frames, N_BINS))
        for inst in INSTRUMENTS
    }
    return cached_track(root, f"random-{seed}", stems, n_frames)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("controlled")


@pytest.fixture(scope="module")
def controlled_tracks(root):
    return [constant_track(root, t) for t in range(3)]


def sampler_for(
    tracks,
    tiny_config,
    seed: int = 0,
    fixed_target: int | None = None,
    joint: bool = False,
    with_complex: bool = False,
    n_channels: int = 2,
    n_frames: int = N_FRAMES,
    **train,
) -> PatchSampler:
    options = {**NO_AUGMENTATION, **train}
    return PatchSampler(
        tracks,
        n_frames,
        dataclasses.replace(tiny_config.train, **options),
        INSTRUMENTS,
        N_BINS,
        n_channels,
        seed,
        fixed_target,
        joint=joint,
        with_complex=with_complex,
    )


def constant(x: np.ndarray) -> float:
    """The single value of a constant array (asserts it is constant)."""
    np.testing.assert_allclose(x, x.flat[0], rtol=1e-5)
    return float(x.flat[0])


def track_of(mix_channel0: float, n_tracks: int = 3) -> int:
    """Which constant track a unit-gain, non-remixed mixture of all four stems came from."""
    (t,) = [t for t in range(n_tracks) if abs(mix_channel0 - 15 * (1 + 0.1 * t)) < 1e-3]
    return t


# --------------------------------------------------------------------------- layout


@pytest.mark.parametrize("mode", ["one", "fixed", "joint", "joint_complex", "one_complex"])
def test_batch_keys_shapes_and_dtypes(controlled_tracks, tiny_config, mode):
    sampler = sampler_for(
        controlled_tracks,
        tiny_config,
        fixed_target=1 if mode == "fixed" else None,
        joint=mode.startswith("joint"),
        with_complex=mode.endswith("complex"),
    )
    batch = sampler.batch(0, 3)
    keys = ["magnitude", "target", "weight"] + ([] if mode.startswith("joint") else ["condition"])
    if mode.endswith("complex"):
        keys += ["mixture_real", "mixture_imag", "target_real", "target_imag"]
    assert sampler.keys() == tuple(keys) and list(batch) == keys
    k = 4 if mode.startswith("joint") else 1
    assert sampler.n_targets == k
    expected = {
        "magnitude": (3, N_BINS, N_FRAMES, 2),
        "target": (3, k, N_BINS, N_FRAMES, 2),
        "weight": (3, k),
        "condition": (3, 4),
        "mixture_real": (3, N_BINS, N_FRAMES, 2),
        "mixture_imag": (3, N_BINS, N_FRAMES, 2),
        "target_real": (3, k, N_BINS, N_FRAMES, 2),
        "target_imag": (3, k, N_BINS, N_FRAMES, 2),
    }
    assert sampler.shapes(3) == {key: expected[key] for key in keys}
    for key in keys:
        assert batch[key].shape == expected[key] and batch[key].dtype == np.float32, key
    assert (batch["magnitude"] >= 0).all() and (batch["target"] >= 0).all()


def test_sampler_errors(root, controlled_tracks, tiny_config):
    with pytest.raises(DataError, match="no training tracks"):
        sampler_for([], tiny_config)
    vocals_only = constant_track(root, 0, ("vocals",))
    # Instruments no track holds are unknown everywhere (not trained), not an error ...
    sampler = sampler_for([vocals_only], tiny_config, joint=True, remix_probability=1.0)
    assert sampler.missing == ("drums", "bass", "other")
    batch = sampler.batch(0, 4)
    np.testing.assert_array_equal(batch["weight"], np.tile([1.0, 0.0, 0.0, 0.0], (4, 1)))
    silent_bass = constant_track(root, 0, ("vocals", "drums", "other"), silent={"bass"})
    assert sampler_for([silent_bass], tiny_config).missing == (
        "bass",
    )  # a silent marker is no stem to draw
    # ... unless it is the only target, or nothing at all is held.
    with pytest.raises(DataError, match="no training track holds a 'drums' stem"):
        sampler_for([vocals_only], tiny_config, fixed_target=1)
    piano_only = cached_track(
        root, "piano-only", {"piano": np.ones((2, N_SPEC_FRAMES, N_BINS))}, N_SPEC_FRAMES
    )
    with pytest.raises(DataError, match="any of the instruments"):
        sampler_for([piano_only], tiny_config)


# --------------------------------------------------------------------------- augmentation


def test_gain_range_respected(controlled_tracks, tiny_config):
    """Remix off, one-hot condition: target == |stem| * gain with gain inside gain_range."""
    low, high = 0.25, 1.25
    batch = sampler_for(controlled_tracks[:1], tiny_config, gain_range=(low, high)).batch(3, 128)
    gains = []
    for mag, cond, target in zip(
        batch["magnitude"], batch["condition"], batch["target"][:, 0], strict=False
    ):
        k = int(np.argmax(cond))
        np.testing.assert_array_equal(cond, np.eye(4, dtype=np.float32)[k])
        gain = constant(target[..., 0]) / stem_value(k, 0, 0)
        assert constant(target[..., 1]) == pytest.approx(gain * stem_value(k, 1, 0), rel=1e-5)
        # The mixture is the sum of all four gained stems: more than the target, at most all at `high`.
        assert constant(target[..., 0]) < constant(mag[..., 0]) <= high * 15 + 1e-4
        gains.append(gain)
    gains = np.array(gains)
    assert gains.min() >= low - 1e-5 and gains.max() <= high + 1e-5
    assert gains.max() - gains.min() > 0.8 * (high - low)  # spread over the range, not a constant
    assert (batch["weight"] == 1).all()


def test_channel_swap(controlled_tracks, tiny_config):
    for prob, expect_swapped in ((0.0, [False]), (1.0, [True]), (0.5, [False, True])):
        targets = sampler_for(
            controlled_tracks[:1], tiny_config, channel_swap_probability=prob
        ).batch(0, 48)["target"]
        swapped = {constant(t[..., 0]) > constant(t[..., 1]) for t in targets[:, 0]}
        assert sorted(swapped) == expect_swapped, prob


def test_mono_model_never_swaps(root, tiny_config):
    mono = constant_track(root, 0, channels=1)
    batch = sampler_for([mono], tiny_config, n_channels=1, channel_swap_probability=1.0).batch(0, 4)
    assert batch["magnitude"].shape == (4, N_BINS, N_FRAMES, 1) and batch["target"].shape == (
        4,
        1,
        N_BINS,
        N_FRAMES,
        1,
    )
    assert constant(batch["magnitude"]) == pytest.approx(15.0)


def test_progressive_scaling_scales_condition_and_target_together(controlled_tracks, tiny_config):
    batch = sampler_for(controlled_tracks[:1], tiny_config, progressive_probability=1.0).batch(
        0, 64
    )
    values = []
    for mag, cond, target in zip(
        batch["magnitude"], batch["condition"], batch["target"][:, 0], strict=False
    ):
        (k,) = np.flatnonzero(cond)
        p = float(cond[k])
        assert 0.0 <= p <= 1.0
        np.testing.assert_allclose(target[..., 0], p * stem_value(k, 0, 0), rtol=1e-5)
        assert constant(mag[..., 0]) == pytest.approx(15.0, rel=1e-5)  # the mixture is not scaled
        values.append(p)
    assert np.std(values) > 0.15  # really random over (0, 1)
    conds = sampler_for(controlled_tracks[:1], tiny_config).batch(0, 32)["condition"]
    assert (
        set(np.unique(conds)) == {0.0, 1.0} and (conds.sum(axis=1) == 1).all()
    )  # one-hot without it


def test_zero_condition_gives_zero_target(controlled_tracks, tiny_config):
    batch = sampler_for(controlled_tracks, tiny_config, zero_condition_probability=1.0).batch(0, 8)
    assert not batch["condition"].any() and not batch["target"].any()
    assert (batch["magnitude"] > 0).all() and (
        batch["weight"] == 1
    ).all()  # a known (silent) target


def test_multi_hot_target_is_sum_of_selected_stems(controlled_tracks, tiny_config):
    batch = sampler_for(controlled_tracks[:1], tiny_config, multi_hot_probability=1.0).batch(0, 32)
    conds = batch["condition"]
    counts = conds.sum(axis=1)
    assert counts.min() >= 2 and counts.max() <= 4 and set(np.unique(conds)) <= {0.0, 1.0}
    assert len(set(counts)) > 1
    for cond, target in zip(conds, batch["target"][:, 0], strict=False):
        expected = sum(stem_value(s, 0, 0) for s in np.flatnonzero(cond))
        assert constant(target[..., 0]) == pytest.approx(expected, rel=1e-5)


def test_fixed_target_for_standard_unet(root, controlled_tracks, tiny_config):
    no_bass = constant_track(root, 1, ("vocals", "drums", "other"))
    sampler = sampler_for(
        [*controlled_tracks[:1], no_bass],
        tiny_config,
        fixed_target=2,
        progressive_probability=1.0,
        multi_hot_probability=0.5,
        zero_condition_probability=0.5,
    )
    batch = sampler.batch(0, 16)
    np.testing.assert_array_equal(
        batch["condition"], np.tile(np.eye(4, dtype=np.float32)[2], (16, 1))
    )
    np.testing.assert_allclose(batch["target"][..., 0], stem_value(2, 0, 0), rtol=1e-5)
    # Only tracks holding the target are drawn.
    assert {track_of(constant(m[..., 0])) for m in batch["magnitude"]} == {0}


def test_remix_draws_stems_from_several_tracks(controlled_tracks, tiny_config):
    # Without remix the mixture is 15 * (1 + 0.1 t) for one track t (channel 0, unit gains).
    one_track = {15 * (1 + 0.1 * t) for t in range(3)}

    def mixes(prob: float) -> list[float]:
        mags = sampler_for(controlled_tracks, tiny_config, remix_probability=prob).batch(0, 32)[
            "magnitude"
        ]
        return [constant(m[..., 0]) for m in mags]

    assert all(any(abs(m - v) < 1e-3 for v in one_track) for m in mixes(0.0))
    remixed = [m for m in mixes(1.0) if not any(abs(m - v) < 1e-3 for v in one_track)]
    assert len(remixed) > 16


# --------------------------------------------------------------------------- pools, unknown and silent stems


def test_unknown_stems_in_joint_mode(root, controlled_tracks, tiny_config):
    """A track lacking a stem gives no target for it (weight 0); a silent-marked stem a known zero target."""
    full = controlled_tracks[0]  # mixture 15 (channel 0)
    partial = constant_track(root, 1, ("vocals", "drums"))  # mixture (1 + 2) * 1.1
    silent = constant_track(root, 2, ("vocals",), silent={"bass"})  # mixture 1.2
    batch = sampler_for([full, partial], tiny_config, joint=True).batch(0, 64)
    from_partial = np.isclose(batch["magnitude"][:, 0, 0, 0], 3.3)
    assert 0 < from_partial.sum() < 64
    np.testing.assert_array_equal(
        batch["weight"][from_partial], np.tile([1, 1, 0, 0], (from_partial.sum(), 1))
    )
    assert (batch["weight"][~from_partial] == 1).all()
    assert not batch["target"][from_partial, 2:].any() and batch["target"][from_partial, :2].all()
    batch = sampler_for([full, silent], tiny_config, joint=True).batch(0, 64)
    from_silent = np.isclose(batch["magnitude"][:, 0, 0, 0], 1.2)
    assert 0 < from_silent.sum() < 64
    np.testing.assert_array_equal(
        batch["weight"][from_silent], np.tile([1, 0, 1, 0], (from_silent.sum(), 1))
    )
    assert not batch["target"][from_silent, 1:].any() and batch["target"][from_silent, 0].all()


def test_condition_only_on_known_stems(root, controlled_tracks, tiny_config):
    full = controlled_tracks[0]
    partial = constant_track(root, 1, ("vocals", "drums"))
    silent = constant_track(root, 2, ("vocals",), silent={"bass"})
    batch = sampler_for([full, partial], tiny_config, multi_hot_probability=0.5).batch(0, 128)
    from_partial = np.isclose(batch["magnitude"][:, 0, 0, 0], 3.3)
    conds = batch["condition"][from_partial]
    assert len(conds) > 4 and not conds[:, 2:].any() and (conds.sum(axis=1) >= 1).all()
    assert batch["condition"][~from_partial][:, 2:].any()
    batch = sampler_for([full, silent], tiny_config).batch(0, 128)
    from_silent = np.isclose(batch["magnitude"][:, 0, 0, 0], 1.2)
    conds, targets = batch["condition"][from_silent], batch["target"][from_silent, 0]
    assert not conds[:, [1, 3]].any()
    assert conds[:, 2].any() and conds[:, 0].any()  # the silent bass is a possible condition ...
    assert not targets[conds[:, 2] == 1].any()  # ... with a zero target
    assert targets[conds[:, 0] == 1].all()
    assert (batch["weight"] == 1).all()


def test_remix_draws_each_instrument_from_tracks_that_hold_it(root, controlled_tracks, tiny_config):
    partial = constant_track(root, 1, ("vocals", "drums"))
    silent = constant_track(root, 2, ("vocals",), silent={"bass", "drums", "other"})
    batch = sampler_for(
        [controlled_tracks[0], partial, silent], tiny_config, joint=True, remix_probability=1.0
    ).batch(0, 96)
    assert (batch["weight"] == 1).all()
    origins = {}
    for s, inst in enumerate(INSTRUMENTS):
        values = {
            round(constant(t[..., 0]) / stem_value(s, 0, 0), 3) for t in batch["target"][:, s]
        }
        origins[inst] = {int(round((v - 1) * 10)) for v in values}
    assert origins == {"vocals": {0, 1, 2}, "drums": {0, 1}, "bass": {0}, "other": {0}}


def test_tracks_without_any_model_instrument_are_never_drawn(root, controlled_tracks, tiny_config):
    """Clips of another stem (a `stem=guitar` source for a four-instrument model) give no examples."""
    guitar = cached_track(
        root, "guitar-clip", {"guitar": np.ones((2, 50, N_BINS))}, 50, weight=100.0
    )
    for joint in (False, True):
        batch = sampler_for([controlled_tracks[0], guitar], tiny_config, joint=joint).batch(0, 32)
        assert (batch["weight"] == 1).all()
        assert {track_of(constant(m[..., 0])) for m in batch["magnitude"]} == {0}


def test_length_and_source_weighted_sampling(root, tiny_config):
    """Tracks are drawn in proportion to their patch positions times their source's weight."""
    short = constant_track(root, 0, n_frames=N_FRAMES)  # one position
    long = constant_track(root, 1, n_frames=N_FRAMES + 9)  # ten positions

    def long_fraction(tracks, **train) -> float:
        mags = sampler_for(tracks, tiny_config, **train).batch(0, 600)["magnitude"]
        if train.get("remix_probability"):
            return float(np.mean([abs(constant(m[..., 0]) - 15 * 1.1) < 1e-3 for m in mags]))
        return float(np.mean([track_of(constant(m[..., 0])) == 1 for m in mags]))

    assert long_fraction([short, long]) == pytest.approx(10 / 11, abs=0.05)
    light = dataclasses.replace(long, weight=0.1)
    assert long_fraction([short, light]) == pytest.approx(0.5, abs=0.07)
    # Remixes draw each stem the same way: all four from the long track with probability (10/11)**4.
    assert long_fraction([short, long], remix_probability=1.0) == pytest.approx(
        (10 / 11) ** 4, abs=0.06
    )


def test_short_mono_and_band_limited_tracks(root, tiny_config):
    """Short tracks are zero-padded, mono recordings fill both channels, missing top bins are zero."""
    short = constant_track(root, 0, n_frames=2)
    batch = sampler_for([short], tiny_config).batch(0, 4)
    assert (batch["magnitude"][:, :, :2] > 0).all() and not batch["magnitude"][:, :, 2:].any()
    mono = constant_track(root, 0, channels=1)
    mag = sampler_for([mono], tiny_config).batch(0, 4)["magnitude"]
    np.testing.assert_array_equal(mag[..., 0], mag[..., 1])
    assert constant(mag) == pytest.approx(15.0)
    narrow = constant_track(root, 0, bins=5)
    mag = sampler_for([narrow], tiny_config).batch(0, 4)["magnitude"]
    assert (mag[:, :5] > 0).all() and not mag[:, 5:].any()


# --------------------------------------------------------------------------- complex targets, reproducibility


def test_joint_targets_sum_to_the_mixture(root, tiny_config):
    """All stems known: the complex targets add up to the complex mixture, gains and swaps included."""
    tracks = [random_track(root, seed) for seed in range(3)]
    sampler = sampler_for(
        tracks,
        tiny_config,
        joint=True,
        with_complex=True,
        remix_probability=0.5,
        gain_range=(0.25, 1.25),
        channel_swap_probability=0.5,
    )
    batch = sampler.batch(0, 16)
    assert (batch["weight"] == 1).all()
    np.testing.assert_allclose(batch["target_real"].sum(axis=1), batch["mixture_real"], atol=1e-4)
    np.testing.assert_allclose(batch["target_imag"].sum(axis=1), batch["mixture_imag"], atol=1e-4)
    np.testing.assert_allclose(
        batch["magnitude"],
        np.hypot(batch["mixture_real"], batch["mixture_imag"]),
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        batch["target"], np.hypot(batch["target_real"], batch["target_imag"]), rtol=1e-5, atol=1e-6
    )
    # One condition: the complex target is the conditioned stem.
    one = sampler_for(tracks, tiny_config, with_complex=True, gain_range=(0.5, 1.0)).batch(0, 8)
    np.testing.assert_allclose(
        one["target"][:, 0],
        np.hypot(one["target_real"][:, 0], one["target_imag"][:, 0]),
        rtol=1e-5,
        atol=1e-6,
    )


def test_batches_are_reproducible(root, tiny_config):
    tracks = [random_track(root, seed) for seed in range(3)]
    train = dict(
        remix_probability=0.5,
        gain_range=(0.25, 1.25),
        channel_swap_probability=0.5,
        progressive_probability=0.3,
        multi_hot_probability=0.2,
    )
    sampler = sampler_for(tracks, tiny_config, seed=7, **train)
    again = sampler_for(tracks, tiny_config, seed=7, **train)
    first = sampler.batch(5, 3)
    sampler.batch(9, 3)  # index order does not matter: batch i is a pure function of (seed, i)
    for key, value in again.batch(5, 3).items():
        np.testing.assert_array_equal(value, first[key])
        np.testing.assert_array_equal(sampler.batch(5, 3)[key], value)
    assert not np.array_equal(sampler.batch(6, 3)["magnitude"], first["magnitude"])
    other_seed = sampler_for(tracks, tiny_config, seed=8, **train)
    assert not np.array_equal(other_seed.batch(5, 3)["magnitude"], first["magnitude"])


# --------------------------------------------------------------------------- real cached audio


def test_sampler_on_cached_audio(musdb_cache, tiny_config):
    _, cached = musdb_cache
    cfg = tiny_config
    sampler = config_sampler(cached["train"], cfg, seed=7)
    batch = sampler.batch(0, 3)
    assert batch["magnitude"].shape == (3, cfg.audio.n_bins, cfg.model.n_frames, 2)
    assert batch["target"].shape == (3, 1, cfg.audio.n_bins, cfg.model.n_frames, 2)
    assert batch["magnitude"].max() > 0


def test_sampler_without_augmentation_reproduces_cached_patch(musdb_cache, tiny_config):
    """One track, unit gains, no swap: the mixture patch is |sum of stems| at some start frame."""
    _, cached = musdb_cache
    cfg = tiny_config
    track = cached["train"][0]
    sampler = PatchSampler(
        [track],
        cfg.model.n_frames,
        dataclasses.replace(cfg.train, **NO_AUGMENTATION),
        cfg.model.instruments,
        cfg.audio.n_bins,
        cfg.audio.n_channels,
        seed=0,
    )
    batch = sampler.batch(0, 1)
    full_mix = np.transpose(
        np.abs(track.mixture(cfg.audio.n_bins, 2)), (2, 1, 0)
    )  # [bins, frames, ch]
    n = cfg.model.n_frames
    starts = [
        s
        for s in range(track.n_frames - n + 1)
        if np.allclose(full_mix[:, s : s + n], batch["magnitude"][0], atol=1e-4)
    ]
    assert starts, "mixture patch not found in the cached track"
    k = int(np.argmax(batch["condition"][0]))
    stem = np.asarray(track.load(cfg.model.instruments[k]))
    expected = np.transpose(np.abs(stem[:, starts[0] : starts[0] + n]), (2, 1, 0))
    np.testing.assert_allclose(batch["target"][0, 0], expected, atol=1e-4)


# --------------------------------------------------------------------------- validation patches


def test_validation_batches_one_condition(musdb_cache, tiny_config):
    _, cached = musdb_cache
    cfg = tiny_config
    n = cfg.model.n_frames
    tracks = cached["valid"]
    sampler = PatchSampler(
        cached["train"], n, cfg.train, cfg.model.instruments, cfg.audio.n_bins, 2, seed=0
    )
    batches = validation_batches(tracks, sampler, max_patches_per_track=3)
    n_patches = sum(min(t.n_frames // n, 3) for t in tracks)
    assert list(batches) == list(sampler.keys())
    assert batches["target"].shape == (n_patches * 4, 1, cfg.audio.n_bins, n, 2)
    assert batches["magnitude"].shape == (n_patches * 4, cfg.audio.n_bins, n, 2)
    np.testing.assert_array_equal(batches["condition"][:4], np.eye(4, dtype=np.float32))
    assert (batches["weight"] == 1).all()
    # No augmentation: the first patch is frames [0, n) of the first track; the last ends at its end.
    track = tracks[0]
    mixture = track.mixture(cfg.audio.n_bins, 2)
    np.testing.assert_allclose(
        batches["magnitude"][0], np.transpose(np.abs(mixture[:, :n]), (2, 1, 0)), atol=1e-5
    )
    for k, inst in enumerate(cfg.model.instruments):
        stem = np.asarray(track.load(inst))
        np.testing.assert_allclose(
            batches["target"][k, 0], np.transpose(np.abs(stem[:, :n]), (2, 1, 0)), atol=1e-5
        )
    last = 4 * (min(track.n_frames // n, 3) - 1)
    np.testing.assert_allclose(
        batches["magnitude"][last], np.transpose(np.abs(mixture[:, -n:]), (2, 1, 0)), atol=1e-5
    )
    again = validation_batches(tracks, sampler, max_patches_per_track=3)
    for key in batches:
        np.testing.assert_array_equal(again[key], batches[key])

    fixed = PatchSampler(
        cached["train"],
        n,
        cfg.train,
        cfg.model.instruments,
        cfg.audio.n_bins,
        2,
        seed=0,
        fixed_target=0,
    )
    std = validation_batches(tracks, fixed, max_patches_per_track=3)
    assert std["target"].shape[0] == n_patches
    np.testing.assert_array_equal(std["target"], batches["target"][0::4])
    np.testing.assert_array_equal(
        std["condition"], np.tile(np.eye(4, dtype=np.float32)[0], (n_patches, 1))
    )


def test_validation_batches_joint(musdb_cache, tiny_config):
    _, cached = musdb_cache
    cfg = tiny_config
    sampler = PatchSampler(
        cached["train"],
        cfg.model.n_frames,
        cfg.train,
        cfg.model.instruments,
        cfg.audio.n_bins,
        2,
        seed=0,
        joint=True,
        with_complex=True,
    )
    batches = validation_batches(cached["valid"], sampler, max_patches_per_track=2)
    one = validation_batches(
        cached["valid"], sampler_for_keys(cached, cfg), max_patches_per_track=2
    )
    assert "condition" not in batches and batches["target"].shape[1] == 4
    assert batches["target"].shape[0] * 4 == one["target"].shape[0]
    np.testing.assert_array_equal(batches["target"].reshape(one["target"].shape), one["target"])
    np.testing.assert_allclose(
        batches["target_real"].sum(axis=1), batches["mixture_real"], atol=1e-4
    )
    assert (batches["weight"] == 1).all()


def sampler_for_keys(cached, cfg) -> PatchSampler:
    return PatchSampler(
        cached["train"],
        cfg.model.n_frames,
        cfg.train,
        cfg.model.instruments,
        cfg.audio.n_bins,
        2,
        seed=0,
    )


def test_validation_batches_skip_unknown_stems(root, controlled_tracks, tiny_config):
    partial = constant_track(root, 1, ("vocals", "drums"))
    silent = constant_track(root, 2, ("vocals",), silent={"bass"})
    sampler = sampler_for(controlled_tracks, tiny_config)
    rows = validation_batches([partial, silent], sampler, max_patches_per_track=1)
    # vocals and drums of `partial`, vocals and the (silent) bass of `silent`.
    np.testing.assert_array_equal(rows["condition"], np.eye(4, dtype=np.float32)[[0, 1, 0, 2]])
    assert rows["target"][:3].all() and not rows["target"][3].any()
    joint = validation_batches(
        [partial, silent],
        sampler_for(controlled_tracks, tiny_config, joint=True),
        max_patches_per_track=1,
    )
    np.testing.assert_array_equal(joint["weight"], [[1, 1, 0, 0], [1, 0, 1, 0]])
    fixed = sampler_for(controlled_tracks, tiny_config, fixed_target=3)
    with pytest.raises(DataError, match="no validation patches"):
        validation_batches([partial, silent], fixed)
    # Patches per track: one per n_frames of the track, at most max_patches_per_track, at least one.
    assert (
        len(validation_batches([controlled_tracks[0]], sampler, max_patches_per_track=9)["weight"])
        == 3 * 4
    )
    short = constant_track(root, 0, n_frames=2)
    assert len(validation_batches([short], sampler)["weight"]) == 4


def test_stems_without_an_instrument_sound_in_the_mixture_only(root, tiny_config):
    """A track's stem the model has no condition for (a piano) is interference in its own mixes,
    never a target; remixes draw only the model's instruments."""
    piano = np.full((2, N_SPEC_FRAMES, N_BINS), 100.0)
    stems = {
        inst: np.full((2, N_SPEC_FRAMES, N_BINS), stem_value(s, 0, 0))
        for s, inst in enumerate(INSTRUMENTS)
    }
    track = cached_track(root, "with-piano", {**stems, "piano": piano}, N_SPEC_FRAMES)
    batch = sampler_for([track], tiny_config, joint=True).batch(0, 4)
    np.testing.assert_allclose(batch["magnitude"], 100.0 + 15.0, rtol=1e-5)
    np.testing.assert_allclose(
        batch["target"][:, :, 0, 0, 0], np.tile([1.0, 2.0, 4.0, 8.0], (4, 1)), rtol=1e-5
    )
    remixed = sampler_for([track], tiny_config, joint=True, remix_probability=1.0).batch(0, 4)
    np.testing.assert_allclose(remixed["magnitude"], 15.0, rtol=1e-5)
    valid = validation_batches([track], sampler_for([track], tiny_config, joint=True))
    np.testing.assert_allclose(valid["magnitude"], 115.0, rtol=1e-5)


def test_warp_bins_moves_content_along_frequency():
    from cunet.data.sampler import warp_bins

    spec = np.zeros((2, 3, 32), np.complex64)
    spec[..., 8] = 1.0 + 1.0j
    up = warp_bins(spec, 1.25)
    assert np.argmax(np.abs(up[0, 0])) == 10 and up.dtype == np.complex64 and up.shape == spec.shape
    down = warp_bins(spec, 0.75)
    assert np.argmax(np.abs(down[0, 0])) == 6
    np.testing.assert_array_equal(warp_bins(spec, 1.0), spec)
    top = np.zeros((1, 1, 32), np.complex64)
    top[..., 31] = 1
    assert not warp_bins(top, 1.2).any()  # moved past the top bin: dropped


def test_freq_warp_keeps_the_mixture_the_sum_of_the_stems(root, tiny_config):
    tracks = [random_track(root, 11)]
    sampler = sampler_for(tracks, tiny_config, joint=True, with_complex=True, freq_warp=0.2)
    batch = sampler.batch(0, 8)
    mix = batch["mixture_real"] + 1j * batch["mixture_imag"]
    np.testing.assert_allclose(
        (batch["target_real"] + 1j * batch["target_imag"]).sum(axis=1), mix, atol=1e-4
    )
    plain = sampler_for(tracks, tiny_config, joint=True, with_complex=True).batch(0, 8)
    assert not np.allclose(plain["magnitude"], batch["magnitude"])

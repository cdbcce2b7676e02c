"""cunet.data: musdb split, on-disk caches, PatchSampler augmentation, tf.data pipelines.

Everything runs on synthesized audio: `make_synthetic_musdb` writes a tiny
MUSDB18 root in the wav layout whose track names are real MUSDB18 names, some
from musdb's fixed validation list and some from its training split, so
musdb's own split logic is exercised.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
import numpy as np
import pytest

from cunet.config import INSTRUMENTS, Config, TrainConfig

from conftest import TRAIN_NAMES, VALID_NAMES, musdb_validation_names


@pytest.fixture(scope="session")
def train_tracks(musdb_root):
    from cunet.data import open_musdb

    return open_musdb(musdb_root, "train", "train", is_wav=True)


@pytest.fixture(scope="session")
def valid_tracks(musdb_root):
    from cunet.data import open_musdb

    return open_musdb(musdb_root, "train", "valid", is_wav=True)


@pytest.fixture(scope="session")
def cached_train(tmp_path_factory, train_tracks, tiny_config):
    from cunet.data import build_cache

    return build_cache(train_tracks, tmp_path_factory.mktemp("cache"), tiny_config.audio,
                       tiny_config.model.instruments, progress=False)


def with_train(config: Config, **changes) -> TrainConfig:
    return dataclasses.replace(config.train, **changes)


# --------------------------------------------------------------------------- musdb split


def test_synthetic_names_cover_both_musdb_splits():
    valid = musdb_validation_names()
    assert set(VALID_NAMES) <= valid
    assert not set(TRAIN_NAMES) & valid


def test_open_musdb_uses_musdbs_split(train_tracks, valid_tracks):
    assert sorted(t.name for t in train_tracks) == sorted(TRAIN_NAMES)
    assert sorted(t.name for t in valid_tracks) == sorted(VALID_NAMES)
    assert not {t.name for t in train_tracks} & musdb_validation_names()


def test_open_musdb_missing_root(tmp_path):
    from cunet.data import open_musdb

    with pytest.raises(FileNotFoundError, match="not a directory"):
        open_musdb(tmp_path / "nope", is_wav=True)


def test_no_valid_track_in_training_cache(cached_train):
    from cunet.data import track_key

    names = {t.name for t in cached_train}
    assert names == set(TRAIN_NAMES)
    assert not names & musdb_validation_names()
    # The training cache folder holds only training tracks.
    files = {p.stem for p in cached_train[0].stft_path.parent.glob("*.npy")}
    assert files == {track_key(n) for n in TRAIN_NAMES}
    assert not files & {track_key(n) for n in musdb_validation_names()}


# --------------------------------------------------------------------------- cache


def test_cache_contents_match_decoded_audio(tmp_path, train_tracks, tiny_config):
    import soundfile as sf

    from cunet.data import audio_key, build_cache, stft_key, track_key
    from cunet.spectral import n_frames_for, stft

    audio = tiny_config.audio
    cached = build_cache(train_tracks[:1], tmp_path, audio, INSTRUMENTS, progress=False)
    track = train_tracks[0]
    stems = np.load(tmp_path / audio_key(audio) / f"{track_key(track.name)}.npy")
    assert stems.dtype == np.float32 and stems.shape[0] == len(INSTRUMENTS) and stems.shape[2] == 2
    for i, name in enumerate(INSTRUMENTS):
        wav, sr = sf.read(Path(track.path).parent / f"{name}.wav", dtype="float32")
        assert sr == audio.sample_rate
        np.testing.assert_allclose(stems[i], wav, atol=1e-6)
    spec = cached[0].load()
    assert cached[0].stft_path.parent.name == stft_key(audio)
    assert isinstance(spec, np.memmap) and spec.dtype == np.complex64
    assert spec.shape == (len(INSTRUMENTS), 2, n_frames_for(stems.shape[1], audio.n_fft, audio.hop_length),
                          audio.n_bins)
    expected = stft(np.transpose(stems, (0, 2, 1)), audio.n_fft, audio.hop_length).numpy()[..., :audio.n_bins]
    np.testing.assert_allclose(spec, expected, atol=1e-4)


def test_cache_built_once_and_keyed_by_audio_params(tmp_path, train_tracks, tiny_config, monkeypatch):
    import cunet.data as data

    decodes: list[int] = []
    real_conform = data.conform_audio

    def counting_conform(*args, **kwargs):
        decodes.append(1)
        return real_conform(*args, **kwargs)

    monkeypatch.setattr(data, "conform_audio", counting_conform)
    audio = tiny_config.audio
    first = data.build_cache(train_tracks, tmp_path, audio, INSTRUMENTS, progress=False)
    assert len(decodes) == len(train_tracks) * len(INSTRUMENTS)
    mtimes = {t.name: t.stft_path.stat().st_mtime_ns for t in first}

    # Second call: nothing decoded, nothing rewritten.
    decodes.clear()
    second = data.build_cache(train_tracks, tmp_path, audio, INSTRUMENTS, progress=False)
    assert decodes == []
    assert [t.stft_path for t in second] == [t.stft_path for t in first]
    assert {t.name: t.stft_path.stat().st_mtime_ns for t in second} == mtimes

    # Other STFT params: a new STFT cache under a new key, computed from the cached audio (no decoding).
    other = dataclasses.replace(audio, n_fft=512, n_bins=256)
    assert data.stft_key(other) != data.stft_key(audio)
    assert data.audio_key(other) == data.audio_key(audio)
    third = data.build_cache(train_tracks, tmp_path, other, INSTRUMENTS, progress=False)
    assert decodes == []
    assert third[0].stft_path.parent.name == data.stft_key(other)
    assert third[0].load().shape[-1] == 256
    assert {t.name: t.stft_path.stat().st_mtime_ns for t in first} == mtimes

    # Another sample rate is another audio key: decoded again.
    mono = dataclasses.replace(audio, n_channels=1)
    assert data.audio_key(mono) != data.audio_key(audio)
    data.build_cache(train_tracks[:1], tmp_path, mono, INSTRUMENTS, progress=False)
    assert len(decodes) == len(INSTRUMENTS)
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temp files


def test_track_key_is_filesystem_safe():
    from cunet.data import track_key

    assert track_key("Johnny Lokke - Promises & Lies") == "Johnny_Lokke_-_Promises_Lies"
    assert "/" not in track_key("a/b") and track_key("///") == "track"


def test_conform_audio_rate_and_channels(tiny_config):
    from cunet.data import conform_audio

    x = np.random.default_rng(0).standard_normal((22050, 1)).astype(np.float32)
    y = conform_audio(x, 22050, tiny_config.audio)
    assert y.shape == (44100, 2) and y.dtype == np.float32
    np.testing.assert_array_equal(y[:, 0], y[:, 1])
    mono = conform_audio(np.ones((100, 2), np.float32), 44100, dataclasses.replace(tiny_config.audio, n_channels=1))
    assert mono.shape == (100, 1)


# --------------------------------------------------------------------------- PatchSampler on controlled spectra
#
# Synthetic cached STFTs with known magnitudes: stem s, channel c of track t is the
# positive real constant 2**s * (c + 1) * (1 + 0.1 t) (same phase everywhere), so
# mixture and target magnitudes reveal which stems, gains, swaps and tracks were used.

N_BINS, N_FRAMES, N_SPEC_FRAMES, N_TRACKS = 8, 4, 12, 3


def stem_value(s: int, c: int, t: int) -> float:
    return 2.0**s * (c + 1) * (1 + 0.1 * t)


@pytest.fixture(scope="module")
def controlled_tracks(tmp_path_factory):
    from cunet.data import CachedTrack

    folder = tmp_path_factory.mktemp("controlled")
    tracks = []
    for t in range(N_TRACKS):
        spec = np.zeros((4, 2, N_SPEC_FRAMES, N_BINS), np.complex64)
        for s in range(4):
            for c in range(2):
                spec[s, c] = stem_value(s, c, t)
        np.save(folder / f"t{t}.npy", spec)
        tracks.append(CachedTrack(f"t{t}", folder / f"t{t}.npy"))
    return tracks


def sampler_for(tracks, tiny_config, seed: int = 0, fixed_target: int | None = None, **train):
    from cunet.data import PatchSampler

    defaults = dict(remix_probability=0.0, gain_range=(1.0, 1.0), channel_swap_probability=0.0,
                    progressive_probability=0.0, multi_hot_probability=0.0, zero_condition_probability=0.0)
    defaults.update(train)
    return PatchSampler(tracks, N_FRAMES, with_train(tiny_config, **defaults), 4, seed, fixed_target)


def constant(x: np.ndarray) -> float:
    """The single value of a constant array (asserts it is constant)."""
    np.testing.assert_allclose(x, x.flat[0], rtol=1e-5)
    return float(x.flat[0])


def test_gain_range_respected(controlled_tracks, tiny_config):
    """Remix off, one-hot condition: target == |stem| * gain with gain inside gain_range."""
    low, high = 0.25, 1.25
    sampler = sampler_for(controlled_tracks[:1], tiny_config, gain_range=(low, high))
    mags, conds, targets = sampler.batch(3, 128)
    gains = []
    for mag, cond, target in zip(mags, conds, targets):
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


def test_channel_swap(controlled_tracks, tiny_config):
    for prob, expect_swapped in ((0.0, [False]), (1.0, [True]), (0.5, [False, True])):
        sampler = sampler_for(controlled_tracks[:1], tiny_config, channel_swap_probability=prob)
        _, _, targets = sampler.batch(0, 48)
        swapped = {constant(t[..., 0]) > constant(t[..., 1]) for t in targets}
        assert sorted(swapped) == expect_swapped, prob


def test_channel_swap_skipped_for_mono(tmp_path, tiny_config):
    from cunet.data import CachedTrack

    np.save(tmp_path / "m.npy", np.ones((4, 1, N_SPEC_FRAMES, N_BINS), np.complex64))
    sampler = sampler_for([CachedTrack("m", tmp_path / "m.npy")], tiny_config, channel_swap_probability=1.0)
    mags, _, targets = sampler.batch(0, 4)
    assert mags.shape == (4, N_BINS, N_FRAMES, 1) and targets.shape == mags.shape


def test_progressive_scaling_scales_condition_and_target_together(controlled_tracks, tiny_config):
    sampler = sampler_for(controlled_tracks[:1], tiny_config, progressive_probability=1.0)
    mags, conds, targets = sampler.batch(0, 64)
    values = []
    for mag, cond, target in zip(mags, conds, targets):
        (k,) = np.flatnonzero(cond)
        p = float(cond[k])
        assert 0.0 <= p <= 1.0
        np.testing.assert_allclose(target[..., 0], p * stem_value(k, 0, 0), rtol=1e-5)
        # The mixture is not scaled.
        assert constant(mag[..., 0]) == pytest.approx(15.0, rel=1e-5)
        values.append(p)
    assert np.std(values) > 0.15  # really random over (0, 1)
    # Without progressive scaling conditions stay one-hot.
    _, conds, _ = sampler_for(controlled_tracks[:1], tiny_config).batch(0, 32)
    assert set(np.unique(conds)) == {0.0, 1.0} and (conds.sum(axis=1) == 1).all()


def test_zero_condition_gives_zero_target(controlled_tracks, tiny_config):
    sampler = sampler_for(controlled_tracks, tiny_config, zero_condition_probability=1.0)
    mags, conds, targets = sampler.batch(0, 8)
    assert not conds.any()
    assert not targets.any()
    assert (mags > 0).all()


def test_multi_hot_target_is_sum_of_selected_stems(controlled_tracks, tiny_config):
    sampler = sampler_for(controlled_tracks[:1], tiny_config, multi_hot_probability=1.0)
    _, conds, targets = sampler.batch(0, 32)
    counts = conds.sum(axis=1)
    assert counts.min() >= 2 and counts.max() <= 4 and set(np.unique(conds)) <= {0.0, 1.0}
    for cond, target in zip(conds, targets):
        expected = sum(stem_value(s, 0, 0) for s in np.flatnonzero(cond))
        assert constant(target[..., 0]) == pytest.approx(expected, rel=1e-5)


def test_fixed_target_for_standard_unet(controlled_tracks, tiny_config):
    sampler = sampler_for(controlled_tracks[:1], tiny_config, fixed_target=2, progressive_probability=1.0,
                          multi_hot_probability=0.5, zero_condition_probability=0.5)
    _, conds, targets = sampler.batch(0, 16)
    np.testing.assert_array_equal(conds, np.tile(np.eye(4, dtype=np.float32)[2], (16, 1)))
    np.testing.assert_allclose(targets[..., 0], stem_value(2, 0, 0), rtol=1e-5)


def test_remix_draws_stems_from_several_tracks(controlled_tracks, tiny_config):
    # Without remix the mixture is 15 * (1 + 0.1 t) for one track t (channel 0, unit gains).
    one_track = {15 * (1 + 0.1 * t) for t in range(N_TRACKS)}

    def mixes(prob: float) -> list[float]:
        mags, _, _ = sampler_for(controlled_tracks, tiny_config, remix_probability=prob).batch(0, 32)
        return [constant(m[..., 0]) for m in mags]

    assert all(any(abs(m - v) < 1e-3 for v in one_track) for m in mixes(0.0))
    remixed = [m for m in mixes(1.0) if not any(abs(m - v) < 1e-3 for v in one_track)]
    assert len(remixed) > 16


# --------------------------------------------------------------------------- PatchSampler on real cached audio


def test_sampler_shapes_dtypes_and_reproducibility(cached_train, tiny_config):
    from cunet.data import PatchSampler

    cfg = tiny_config
    sampler = PatchSampler(cached_train, cfg.model.n_frames, cfg.train, 4, seed=7)
    mag, cond, target = sampler.batch(0, 3)
    assert mag.shape == target.shape == (3, cfg.audio.n_bins, cfg.model.n_frames, 2)
    assert cond.shape == (3, 4)
    assert mag.dtype == cond.dtype == target.dtype == np.float32
    assert (mag >= 0).all() and (target >= 0).all() and mag.max() > 0
    again = PatchSampler(cached_train, cfg.model.n_frames, cfg.train, 4, seed=7)
    for a, b in zip(sampler.batch(5, 3), again.batch(5, 3)):
        np.testing.assert_array_equal(a, b)
    # Index order does not matter (batch i is a pure function of seed and i).
    sampler.batch(9, 3)
    for a, b in zip(sampler.batch(5, 3), again.batch(5, 3)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(sampler.batch(5, 3)[0], sampler.batch(6, 3)[0])
    other_seed = PatchSampler(cached_train, cfg.model.n_frames, cfg.train, 4, seed=8)
    assert not np.array_equal(sampler.batch(5, 3)[0], other_seed.batch(5, 3)[0])


def test_sampler_without_augmentation_reproduces_cached_patch(cached_train, tiny_config):
    """One track, unit gains, no swap: the mixture patch is |sum of stems| at some start frame."""
    from cunet.data import PatchSampler

    cfg = tiny_config
    train = with_train(cfg, remix_probability=0.0, gain_range=(1.0, 1.0), channel_swap_probability=0.0,
                       progressive_probability=0.0)
    sampler = PatchSampler(cached_train[:1], cfg.model.n_frames, train, 4, seed=0)
    mag, cond, target = sampler.batch(0, 1)
    spec = cached_train[0].load()
    full_mix = np.transpose(np.abs(spec.sum(axis=0)), (2, 1, 0))  # [bins, frames, ch]
    n = cfg.model.n_frames
    starts = [s for s in range(spec.shape[2] - n + 1) if np.allclose(full_mix[:, s:s + n], mag[0], atol=1e-4)]
    assert starts, "mixture patch not found in the cached track"
    k = int(np.argmax(cond[0]))
    expected = np.transpose(np.abs(spec[k, :, starts[0]:starts[0] + n]), (2, 1, 0))
    np.testing.assert_allclose(target[0], expected, atol=1e-4)


def test_sampler_rejects_empty_and_short_tracks(cached_train, tiny_config):
    from cunet.data import PatchSampler

    with pytest.raises(ValueError, match="no training tracks"):
        PatchSampler([], 64, tiny_config.train, 4, 0)
    with pytest.raises(ValueError, match="shorter than one patch"):
        PatchSampler(cached_train, 100_000, tiny_config.train, 4, 0)


# --------------------------------------------------------------------------- tf.data and validation


def test_train_dataset_structure_and_order(cached_train, tiny_config):
    import tensorflow as tf

    from cunet.data import PatchSampler, train_dataset

    cfg = tiny_config
    sampler = PatchSampler(cached_train, cfg.model.n_frames, cfg.train, 4, seed=3)
    ds = train_dataset(sampler, 2, cfg.audio.n_bins, cfg.audio.n_channels, conditioned=True, first_index=10)
    inputs_spec, target_spec = ds.element_spec
    assert set(inputs_spec) == {"magnitude", "condition"}
    assert inputs_spec["magnitude"].shape == (2, cfg.audio.n_bins, cfg.model.n_frames, 2)
    assert inputs_spec["condition"].shape == (2, 4)
    assert target_spec.shape == inputs_spec["magnitude"].shape and target_spec.dtype == tf.float32
    for i, (inputs, target) in enumerate(ds.take(3)):
        mag, cond, tgt = sampler.batch(10 + i, 2)  # deterministic order: batch index = first_index + step
        np.testing.assert_array_equal(inputs["magnitude"].numpy(), mag)
        np.testing.assert_array_equal(inputs["condition"].numpy(), cond)
        np.testing.assert_array_equal(target.numpy(), tgt)

    plain = train_dataset(sampler, 2, cfg.audio.n_bins, cfg.audio.n_channels, conditioned=False)
    assert set(plain.element_spec[0]) == {"magnitude"}


def test_validation_arrays(cached_train, tiny_config):
    from cunet.data import validation_arrays

    n = tiny_config.model.n_frames
    inputs, targets = validation_arrays(cached_train, n, 4, max_patches_per_track=3)
    expected_patches = sum(min(t.load().shape[2] // n, 3) for t in cached_train)
    assert targets.shape == (expected_patches * 4, tiny_config.audio.n_bins, n, 2)
    assert inputs["magnitude"].shape == targets.shape and inputs["condition"].shape == (len(targets), 4)
    np.testing.assert_array_equal(inputs["condition"][:4], np.eye(4, dtype=np.float32))
    # No augmentation: the first patch is frames [0, n) of the first track.
    spec = cached_train[0].load()
    np.testing.assert_allclose(inputs["magnitude"][0], np.transpose(np.abs(spec[:, :, :n].sum(0)), (2, 1, 0)),
                               rtol=1e-5, atol=1e-6)
    for k in range(4):
        np.testing.assert_allclose(targets[k], np.transpose(np.abs(spec[k, :, :n]), (2, 1, 0)), rtol=1e-6)
    again = validation_arrays(cached_train, n, 4, max_patches_per_track=3)
    np.testing.assert_array_equal(again[1], targets)

    std_inputs, std_targets = validation_arrays(cached_train, n, 4, fixed_target=0, max_patches_per_track=3)
    assert set(std_inputs) == {"magnitude"} and len(std_targets) == expected_patches
    np.testing.assert_array_equal(std_targets, targets[0::4])

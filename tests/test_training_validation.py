"""cunet.training.validation: segment SDR by hand, whole-track separation, the validation SDR
per instrument, the callback, and the input statistics of `model.input_scaling: log`."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import config_sampler
from test_data_sampler import constant_track

from cunet.training.validation import (
    ValidationSDR,
    input_statistics,
    segment_sdr,
    separate_track_masks,
    validation_sdr,
)


def spectrogram(values_per_frame: np.ndarray, bins: int = 3, channels: int = 2) -> np.ndarray:
    """complex [ch, F, bins] whose every bin of frame f holds values_per_frame[f]."""
    return np.broadcast_to(
        np.asarray(values_per_frame, np.complex64)[None, :, None],
        (channels, len(values_per_frame), bins),
    ).copy()


# --------------------------------------------------------------------------- segment SDR


def test_segment_sdr_by_hand():
    rng = np.random.default_rng(0)
    ref = (rng.standard_normal((2, 40, 5)) + 1j * rng.standard_normal((2, 40, 5))).astype(
        np.complex64
    )
    assert segment_sdr(ref, ref, 10) > 100  # perfect
    assert segment_sdr(ref, np.zeros_like(ref), 10) == pytest.approx(0.0, abs=1e-6)  # nothing: 0 dB
    assert segment_sdr(ref, 0.5 * ref, 10) == pytest.approx(10 * math.log10(4), abs=1e-4)
    assert segment_sdr(ref, 2 * ref, 10) == pytest.approx(
        0.0, abs=1e-4
    )  # error as loud as the signal
    # The median over segments: error gains 0.1, 0.5 and 0.9 in three 10-frame segments -> 0.5 (6 dB).
    gains = np.repeat([0.1, 0.5, 0.9], 10)
    ones = spectrogram(np.ones(30))
    assert segment_sdr(ones, ones * (1 - gains)[None, :, None], 10) == pytest.approx(
        10 * math.log10(4), abs=1e-4
    )
    # A last, incomplete segment is left out.
    assert segment_sdr(
        spectrogram(np.ones(25)), spectrogram(np.r_[np.full(20, 0.5), np.zeros(5)]), 10
    ) == pytest.approx(10 * math.log10(4), abs=1e-4)


def test_segment_sdr_skips_silent_reference_segments():
    ref = spectrogram(np.r_[np.zeros(10), np.ones(20)])
    estimate = spectrogram(
        np.r_[np.full(10, 5.0), np.full(20, 0.5)]
    )  # loud where the reference is silent
    assert segment_sdr(ref, estimate, 10) == pytest.approx(10 * math.log10(4), abs=1e-4)
    assert math.isnan(segment_sdr(np.zeros((2, 30, 3), np.complex64), estimate, 10))  # all silent


def test_segment_sdr_of_a_short_track_is_one_segment():
    ref = spectrogram(np.ones(4))
    assert segment_sdr(ref, 0.5 * ref, 10) == pytest.approx(10 * math.log10(4), abs=1e-4)


# --------------------------------------------------------------------------- separating whole tracks


def constant_masker(values):
    """A stand-in for the mask network: mask k (condition k) is the constant values[k]."""
    values = np.asarray(values, np.float32)

    def masker(feed, training=False):
        magnitude = feed["magnitude"]
        if "condition" in feed:
            per_row = feed["condition"] @ values
        else:
            per_row = np.full(len(magnitude), values[0], np.float32)
        return np.ones_like(magnitude) * per_row[:, None, None, None]

    return masker


def test_separate_track_masks_shapes_padding_and_ratio(tiny_config):
    cfg = tiny_config
    mixture = np.ones(
        (2, 100, cfg.audio.n_bins), np.complex64
    )  # 100 frames: padded to 128 for the network
    seen = []

    def masker(feed, training=False):
        seen.append({k: v.shape for k, v in feed.items()})
        return constant_masker([0.2, 0.4, 0.6, 0.8])(feed)

    masks = separate_track_masks(masker, mixture, cfg)
    assert seen == [{"magnitude": (4, cfg.audio.n_bins, 128, 2), "condition": (4, 4)}]
    assert masks.shape == (4, 2, 100, cfg.audio.n_bins)
    np.testing.assert_allclose(masks[:, 0, 0, 0], [0.2, 0.4, 0.6, 0.8], rtol=1e-6)
    ratio = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, postprocess="ratio"))
    masks = separate_track_masks(constant_masker([0.2, 0.4, 0.6, 0.8]), mixture, ratio)
    np.testing.assert_allclose(masks.sum(axis=0), 1.0, rtol=1e-5)
    np.testing.assert_allclose(masks[:, 0, 0, 0], [0.1, 0.2, 0.3, 0.4], rtol=1e-4)


def test_validation_sdr_by_hand(tmp_path, tiny_config):
    """Constant masks on tracks of constant stems: every SDR is known in closed form."""
    cfg = dataclasses.replace(tiny_config, audio=dataclasses.replace(tiny_config.audio, n_bins=8))
    full = constant_track(tmp_path, 0, n_frames=700)  # stems 1, 2, 4, 8 (channel 0), mixture 15
    partial = constant_track(
        tmp_path, 1, ("vocals", "drums"), n_frames=700
    )  # mixture 3 * 1.1, no bass/other
    logs = validation_sdr(constant_masker([1.0, 0.5, 0.25, 0.0]), [full, partial], cfg)

    def sdr(stem: float, mixture: float, mask: float) -> float:
        return 10 * math.log10(stem**2 / (stem - mask * mixture) ** 2)

    expected = {
        "vocals": np.median([sdr(1, 15, 1.0), sdr(1, 3, 1.0)]),
        "drums": np.median([sdr(2, 15, 0.5), sdr(2, 3, 0.5)]),
        "bass": sdr(4, 15, 0.25),  # only the full track holds bass
        "other": 0.0,  # a zero mask: 0 dB
    }
    assert set(logs) == {"val_sdr", *(f"val_sdr_{k}" for k in expected)}
    for name, value in expected.items():
        assert logs[f"val_sdr_{name}"] == pytest.approx(value, abs=1e-3), name
    assert logs["val_sdr"] == pytest.approx(np.mean(list(expected.values())), abs=1e-3)

    # An instrument no validation track holds is nan and left out of the mean.
    logs = validation_sdr(constant_masker([1.0, 0.5, 0.25, 0.0]), [partial], cfg)
    assert math.isnan(logs["val_sdr_bass"]) and math.isnan(logs["val_sdr_other"])
    assert logs["val_sdr"] == pytest.approx(
        np.mean([logs["val_sdr_vocals"], logs["val_sdr_drums"]])
    )
    # A standard U-Net is scored on its target only.
    std = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, kind="standard", target="drums")
    )
    logs = validation_sdr(constant_masker([0.5]), [full], std)
    assert set(logs) == {"val_sdr", "val_sdr_drums"}
    assert logs["val_sdr"] == logs["val_sdr_drums"] == pytest.approx(sdr(2, 15, 0.5), abs=1e-3)


def test_validation_sdr_of_the_tiny_model(musdb_cache, tiny_config):
    import keras

    from cunet.nn.models import build_model, mask_model

    _, cached = musdb_cache
    keras.utils.set_random_seed(0)
    logs = validation_sdr(mask_model(build_model(tiny_config)), cached["valid"], tiny_config)
    per_instrument = [logs[f"val_sdr_{name}"] for name in tiny_config.model.instruments]
    assert len(logs) == 5 and np.isfinite(per_instrument).all()
    assert logs["val_sdr"] == pytest.approx(np.mean(per_instrument))


def test_validation_sdr_callback_adds_to_the_logs(tmp_path, tiny_config):
    cfg = dataclasses.replace(tiny_config, audio=dataclasses.replace(tiny_config.audio, n_bins=8))
    callback = ValidationSDR([constant_track(tmp_path, 0, n_frames=300)], cfg)
    callback.set_model(SimpleNamespace(masker=constant_masker([1.0, 0.5, 0.25, 0.0])))
    logs = {"loss": 1.0, "val_loss": 2.0}
    callback.on_epoch_end(0, logs)
    assert logs["loss"] == 1.0 and {"val_sdr", "val_sdr_vocals", "val_sdr_other"} <= set(logs)
    assert logs["val_sdr_other"] == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------- input statistics


def test_input_statistics(musdb_cache, tiny_config):
    _, cached = musdb_cache
    cfg = tiny_config
    sampler = config_sampler(cached["train"], cfg, seed=0)
    mean, std = input_statistics(sampler, n_batches=3, batch_size=2)
    assert mean.shape == std.shape == (cfg.audio.n_bins,) and (std > 0).all()
    values = np.concatenate([np.log1p(sampler.batch(10**9 + k, 2)["magnitude"]) for k in range(3)])
    np.testing.assert_allclose(mean, values.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(std, values.std(axis=(0, 2, 3)), rtol=1e-5)
    again = input_statistics(sampler, n_batches=3, batch_size=2)
    np.testing.assert_array_equal(again[0], mean)
    assert mean[:8].mean() > mean[-8:].mean()  # the synthetic stems are loudest at low frequencies

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from cunet.config import Config, ConfigError, config_from_dict, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
PAPER = ["standard", "simple_dense", "complex_dense", "simple_cnn", "complex_cnn"]


def test_all_configs_present_and_valid():
    names = {p.stem for p in CONFIGS}
    assert set(PAPER) | {"default", "tiny"} <= names
    for path in CONFIGS:
        cfg = load_config(path)
        assert isinstance(cfg, Config)
        assert cfg.name == path.stem


@pytest.mark.parametrize("name", PAPER)
def test_paper_setup(name):
    cfg = load_config(Path(CONFIGS[0]).parent / f"{name}.yaml")
    a, m = cfg.audio, cfg.model
    assert (a.sample_rate, a.n_channels, a.n_fft, a.hop_length, a.n_bins) == (
        8192,
        1,
        1024,
        256,
        512,
    )
    assert (m.n_frames, m.n_layers, m.kernel_size, m.first_filters) == (128, 6, 5, 16)
    assert m.filters == (16, 32, 64, 128, 256, 512)
    assert cfg.train.batch_size == 64 and cfg.train.learning_rate == 1e-3
    if name != "standard":
        film, control = name.split("_")
        assert (m.film_type, m.control_type) == (film, control)


def test_default_is_full_band_stereo():
    cfg = load_config(Path(CONFIGS[0]).parent / "default.yaml")
    assert cfg.audio.sample_rate == 44100 and cfg.audio.n_channels == 2
    # The network sees up to ~21.5 kHz; the remaining bin (Nyquist) reuses the top mask.
    assert cfg.audio.max_frequency > 21000
    assert cfg.audio.n_fft // 2 + 1 - cfg.audio.n_bins <= 1


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="model.n_filterz"):
        config_from_dict({"model": {"n_filterz": 3}})
    with pytest.raises(ConfigError, match="'foo'"):
        config_from_dict({"foo": 1})


def test_invalid_values_are_named(tmp_path):
    with pytest.raises(ConfigError, match="audio.n_channels"):
        config_from_dict({"audio": {"n_channels": 3}})
    with pytest.raises(ConfigError, match="model.film_type"):
        config_from_dict({"model": {"film_type": "medium"}})
    with pytest.raises(ConfigError, match="train.batch_size"):
        config_from_dict({"train": {"batch_size": "big"}})
    with pytest.raises(ConfigError, match="model.n_frames"):
        config_from_dict({"model": {"n_frames": 100}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_frozen_and_round_trip():
    cfg = load_config(Path(CONFIGS[0]).parent / "tiny.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.audio.sample_rate = 1  # type: ignore[misc]
    assert config_from_dict(cfg.to_dict()) == cfg


def test_chunk_settings_are_validated_once(tiny_config):
    from cunet.settings import ChunkSettings

    assert ChunkSettings() == ChunkSettings(10.0, 1.0)
    chunk, overlap = ChunkSettings(1.0, 0.25).samples(
        tiny_config.audio, tiny_config.model.time_multiple
    )
    assert overlap == round(0.25 * 44100) and 0 < 2 * overlap < chunk
    for bad in (
        [math.nan, 1.0],
        [math.inf, 1.0],
        [0.0, 0.0],
        [-1.0, 0.0],
        [601.0, 1.0],
        [True, 0.0],
    ):
        with pytest.raises(ConfigError, match=r"chunk length \(chunk_seconds\)"):
            ChunkSettings(*bad)
    for bad in ([1.0, math.nan], [1.0, math.inf], [1.0, -0.5], [1.0, 0.5]):
        with pytest.raises(ConfigError, match=r"overlap \(overlap_seconds\)"):
            ChunkSettings(*bad)


def test_model_kind_says_conditioned_and_outputs():
    standard = config_from_dict({"model": {"kind": "standard", "target": "bass"}})
    assert not standard.model.conditioned and standard.model.outputs == ("bass",)
    assert Config().model.conditioned and Config().model.outputs == (
        "vocals",
        "drums",
        "bass",
        "other",
    )


@pytest.mark.parametrize(
    "section,key,value",
    [
        ("audio", "sample_rate", 10**9),
        ("audio", "sample_rate", 1),
        ("audio", "n_fft", 2**20),
        ("audio", "hop_length", 1),
        ("model", "n_layers", 10**9),
        ("model", "n_frames", 2**20),
        ("model", "first_filters", 10**6),
        ("model", "kernel_size", 1001),
        ("model", "control_units", [16, 10**7]),
    ],
)
def test_sizes_that_shape_buffers_are_bounded(section: str, key: str, value: object) -> None:
    """A model record's config shapes every buffer computed from it: huge values are refused at once
    (n_layers 10**9 would otherwise take 2**n_layers before any other check)."""
    with pytest.raises(ConfigError, match=f"{section}.{key}"):
        config_from_dict({section: {key: value}})


@pytest.mark.parametrize("value", [0.0, -1.0, 5.0, float("nan"), float("inf")])
def test_ratio_power_is_checked(value: float) -> None:
    with pytest.raises(ConfigError, match="model.ratio_power"):
        config_from_dict({"model": {"ratio_power": value}})
    assert config_from_dict({"model": {"ratio_power": 0.75}}).model.ratio_power == 0.75


@pytest.mark.parametrize(
    "train,key",
    [
        ({"lr_schedule": "linear"}, "train.lr_schedule"),
        ({"final_learning_rate": -1e-5}, "train.final_learning_rate"),
        ({"learning_rate": 1e-4, "final_learning_rate": 1e-3}, "train.final_learning_rate"),
        ({"final_learning_rate": float("nan")}, "train.final_learning_rate"),
        ({"learning_rate": float("inf")}, "train.learning_rate"),
    ],
)
def test_learning_rate_schedule_is_checked(train: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        config_from_dict({"train": train})
    cosine = config_from_dict({"train": {"lr_schedule": "cosine", "final_learning_rate": 1e-5}})
    assert (cosine.train.lr_schedule, cosine.train.final_learning_rate) == ("cosine", 1e-5)
    assert config_from_dict({}).train.lr_schedule == "plateau"

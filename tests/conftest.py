"""Shared fixtures: tiny models saved the way cunet saves them, synthetic audio."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


@pytest.fixture(scope="session")
def tiny_config():
    from cunet.config import load_config

    return load_config(CONFIGS / "tiny.yaml")


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, tiny_config) -> Path:
    """A randomly initialised tiny C-U-Net saved with provenance, as training would save it."""
    import keras

    from cunet.models import build_model
    from cunet.provenance import make_provenance, save_model

    keras.utils.set_random_seed(0)
    model = build_model(tiny_config)
    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    save_model(model, path, make_provenance(tiny_config.to_dict(), data={"synthetic": True}))
    return path


@pytest.fixture(scope="session")
def tiny_separator(tiny_model_path):
    from cunet.separator import Separator

    return Separator.from_pretrained(tiny_model_path, chunk_seconds=1.0, overlap_seconds=0.25)


def synth_mixture(seconds: float = 2.0, sample_rate: int = 44100, n_channels: int = 2, seed: int = 0) -> np.ndarray:
    """A stereo-ish test signal: harmonic tone, noise bursts and a bass line; float32 [n_samples, n_channels]."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    tone = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 880 * t)
    bass = 0.2 * np.sin(2 * np.pi * 55 * t)
    bursts = 0.1 * rng.standard_normal(n) * (np.sin(2 * np.pi * 2 * t) > 0.9)
    mono = (tone + bass + bursts).astype(np.float32)
    chans = [mono * (1.0 - 0.2 * c) for c in range(n_channels)]
    return np.stack(chans, axis=1).astype(np.float32)


@pytest.fixture
def synth():
    return synth_mixture

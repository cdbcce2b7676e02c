"""Shared fixtures: tiny models saved the way cunet saves them, synthetic audio."""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from cunet.engines.base import MaskEngine
from cunet.settings import ChunkSettings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


@pytest.fixture(scope="session", autouse=True)
def default_signal_dispositions() -> Iterator[None]:
    """A suite started under nohup or with `&` inherits SIGHUP or SIGINT ignored, and would pass that on
    to every command it starts (cunet keeps ignored signals ignored, as nohup asks): the signal tests
    need the defaults."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGHUP, signal.SIGINT)}
    if saved[signal.SIGHUP] is signal.SIG_IGN:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    if saved[signal.SIGINT] is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture(scope="session")
def tiny_config():
    from cunet.config import load_config

    return load_config(CONFIGS / "tiny.yaml")


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, tiny_config) -> Path:
    """A randomly initialised tiny C-U-Net saved with provenance, as training would save it."""
    import keras

    from cunet.nn.models import build_model
    from cunet.provenance import make_provenance, save_model

    keras.utils.set_random_seed(0)
    model = build_model(tiny_config)
    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    save_model(model, path, make_provenance(tiny_config.to_dict(), data={"synthetic": True}))
    return path


@pytest.fixture(scope="session")
def five_instrument_model_path(tmp_path_factory, tiny_config) -> Path:
    """A random tiny C-U-Net for instruments [vocals, drums, bass, other, guitar] (a model trained on other stems)."""
    import dataclasses

    import keras

    from cunet.nn.models import build_model
    from cunet.provenance import make_provenance, save_model

    config = dataclasses.replace(
        tiny_config,
        model=dataclasses.replace(
            tiny_config.model, instruments=("vocals", "drums", "bass", "other", "guitar")
        ),
    )
    keras.utils.set_random_seed(1)
    return save_model(
        build_model(config),
        tmp_path_factory.mktemp("five") / "five.keras",
        make_provenance(config.to_dict()),
    )


def decoder_film_model(config, seed: int, film_type: str | None = None):
    """(random C-U-Net, its config): `config` with FiLM (of `film_type`, default the config's) only in
    the decoder, and control-network weights drawn large enough that the four conditions give clearly
    different masks."""
    import dataclasses

    import keras

    from cunet.nn.models import build_model

    config = dataclasses.replace(
        config,
        model=dataclasses.replace(
            config.model,
            film_placement="decoder",
            film_type=film_type or config.model.film_type,
        ),
    )
    keras.utils.set_random_seed(seed)
    model = build_model(config)
    control = model.get_layer("control")
    rng = np.random.default_rng(seed)
    control.set_weights([rng.normal(0, 0.5, w.shape) for w in control.get_weights()])
    return model, config


class OnesEngine(MaskEngine):
    """Masks of ones: the separation path around this engine must give back its input."""

    def __init__(self, config) -> None:
        self.config = config

    def masks(self, magnitude: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        return np.ones((conditions.shape[0], *magnitude.shape), np.float32)


@pytest.fixture(scope="session")
def tiny_separator(tiny_model_path):
    from cunet.separator import Separator

    return Separator.from_pretrained(tiny_model_path, chunks=ChunkSettings(1.0, 0.25))


def synth_mixture(
    seconds: float = 2.0, sample_rate: int = 44100, n_channels: int = 2, seed: int = 0
) -> np.ndarray:
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


# Real MUSDB18 names: musdb puts these in split "train" ...
TRAIN_NAMES: tuple[str, ...] = (
    "A Classic Education - NightOwl",
    "Actions - Devil's Words",
    "Music Delta - Disco",
)
# ... and these in split "valid" (listed in musdb's configs/mus.yaml "validation_tracks").
VALID_NAMES: tuple[str, ...] = ("Actions - One Minute Smile", "Johnny Lokke - Promises & Lies")
STEMS: tuple[str, ...] = ("drums", "bass", "other", "vocals")


def musdb_validation_names() -> set[str]:
    """musdb's built-in validation split (track names), read from the installed package."""
    import musdb
    import yaml

    setup = yaml.safe_load((Path(musdb.__file__).parent / "configs" / "mus.yaml").read_text())
    return set(setup["validation_tracks"])


def synth_stems(seconds: float, sample_rate: int, seed: int) -> dict[str, np.ndarray]:
    """Four distinguishable stereo stems, float32 [n_samples, 2], each peak below 0.25."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = 220.0 * (1 + 0.1 * seed)
    vocals = 0.15 * np.sin(2 * np.pi * f0 * t + 3 * np.sin(2 * np.pi * 5 * t)) + 0.05 * np.sin(
        4 * np.pi * f0 * t
    )
    envelope = np.exp(-30 * ((t * 2) % 1.0))
    drums = 0.2 * envelope * rng.standard_normal(n)
    bass = 0.2 * np.sin(2 * np.pi * (55 + 5 * seed) * t)
    other = sum(0.06 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (330.0, 415.0, 494.0))
    pans = {"vocals": 0.5, "drums": 0.3, "bass": 0.5, "other": 0.7}
    out = {}
    for name, mono in (("vocals", vocals), ("drums", drums), ("bass", bass), ("other", other)):
        pan = pans[name]
        out[name] = (
            np.stack([mono * (1.0 - pan) * 2, mono * pan * 2], axis=1).astype(np.float32) * 0.5
        )
    return out


def make_synthetic_musdb(
    root: Path,
    train_names: Sequence[str] = TRAIN_NAMES,
    valid_names: Sequence[str] = VALID_NAMES,
    seconds: float = 3.5,
    sample_rate: int = 44100,
) -> Path:
    """Write a MUSDB18 root in the wav layout: root/train/<track>/{mixture,drums,bass,other,vocals}.wav."""
    import soundfile as sf

    for seed, name in enumerate([*train_names, *valid_names]):
        folder = root / "train" / name
        folder.mkdir(parents=True, exist_ok=True)
        stems = synth_stems(seconds, sample_rate, seed)
        for stem, audio in stems.items():
            sf.write(folder / f"{stem}.wav", audio, sample_rate, subtype="PCM_16")
        sf.write(
            folder / "mixture.wav",
            np.clip(sum(stems.values()), -1, 1),
            sample_rate,
            subtype="PCM_16",
        )
    return root


@pytest.fixture(scope="session")
def musdb_root(tmp_path_factory) -> Path:
    return make_synthetic_musdb(tmp_path_factory.mktemp("musdb"))


def write_track(
    folder: Path,
    stems: dict[str, np.ndarray],
    sample_rate: int = 44100,
    ext: str = "wav",
    mixture: np.ndarray | None = None,
) -> Path:
    """Write one folder-dataset track: folder/<stem>.<ext> per stem (16-bit), and mixture.<ext> if given."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    for name, audio in stems.items():
        sf.write(folder / f"{name}.{ext}", audio, sample_rate, subtype="PCM_16")
    if mixture is not None:
        sf.write(folder / f"mixture.{ext}", np.clip(mixture, -1, 1), sample_rate, subtype="PCM_16")
    return folder


def make_folder_dataset(
    root: Path,
    train_names: Sequence[str],
    valid_names: Sequence[str] = (),
    seconds: float = 1.5,
    sample_rate: int = 44100,
    instruments: Sequence[str] = STEMS,
) -> Path:
    """A folder dataset: root/train/<track>/<stem>.wav (and root/valid/<track>/... when valid_names)."""
    for seed, (split, name) in enumerate(
        [*(("train", n) for n in train_names), *(("valid", n) for n in valid_names)]
    ):
        stems = synth_stems(seconds, sample_rate, seed)
        write_track(
            root / split / name, {k: v for k, v in stems.items() if k in instruments}, sample_rate
        )
    return root


@pytest.fixture(scope="session")
def musdb_cache(tmp_path_factory, musdb_root, tiny_config):
    """The synthetic MUSDB18 root cached once for the tiny config, shared by the data and training tests:
    (cache_dir, {"train": [CachedTrack...], "valid": [...]}) with musdb's split."""
    from cunet.data import build_cache, open_source, parse_data_spec

    cache = tmp_path_factory.mktemp("musdb-cache")
    splits = open_source(parse_data_spec(f"{musdb_root},wav"))
    return cache, {
        s: build_cache(tracks, cache, tiny_config.audio, progress=False)
        for s, tracks in splits.items()
    }


@pytest.fixture(scope="session")
def tiny_tflite_path(tmp_path_factory, tiny_model_path) -> Path:
    """The tiny model exported as a cunet `.tflite` (float32) with 1 s chunks and 0.25 s overlap, so the
    fixed-shape `chunk` signature serves full chunks of a `tiny_separator`-like Separator."""
    from cunet.export.formats import export_model_file

    path = tmp_path_factory.mktemp("tflite") / "tiny.tflite"
    return export_model_file(tiny_model_path, path, chunks=ChunkSettings(1.0, 0.25), fmt="tflite")


def rewrite_tflite(
    src: Path, dst: Path, record: bytes | None | str = "keep", weights_delta: float = 0.0
) -> Path:
    """A copy of a cunet `.tflite` whose "cunet.json" metadata is `record` ("keep": unchanged; None:
    dropped) and whose largest weight buffer is shifted by `weights_delta` (0: unchanged)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(src.read_bytes()))
    entries = [
        m
        for m in model.metadata
        if (m.name.decode() if isinstance(m.name, bytes) else m.name) == "cunet.json"
    ]
    if record is None:
        model.metadata = [m for m in model.metadata if m not in entries]
    elif record != "keep":
        model.buffers[entries[0].buffer].data = np.frombuffer(record, np.uint8)
    if weights_delta:
        largest = max(model.buffers, key=lambda b: 0 if b.data is None else len(b.data))
        values = np.frombuffer(bytes(largest.data), np.float32) + np.float32(weights_delta)
        largest.data = np.frombuffer(values.tobytes(), np.uint8)
    dst.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    return dst


def config_sampler(tracks, cfg, seed: int = 0, **kwargs):
    """A PatchSampler over cached `tracks` laid out as `cfg` says (patch frames, bins, channels)."""
    from cunet.data import PatchSampler

    return PatchSampler(
        tracks,
        cfg.model.n_frames,
        cfg.train,
        cfg.model.instruments,
        cfg.audio.n_bins,
        cfg.audio.n_channels,
        seed=seed,
        **kwargs,
    )


# Vocals are a quarter of the input, accompaniment the rest: easy to check, and the two add up.
SPLEETER_STAND_IN = """
class Separator:
    def __init__(self, multiprocess=True):
        assert multiprocess is False
    def separate(self, audio):
        return {"vocals": audio * 0.25, "accompaniment": audio * 0.75}
"""


@pytest.fixture
def spleeter_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `spleeter` package for this interpreter, on PYTHONPATH; returns the interpreter."""
    package = tmp_path / "stand_in" / "spleeter"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "separator.py").write_text(SPLEETER_STAND_IN)
    monkeypatch.setenv("PYTHONPATH", str(package.parent))
    return Path(sys.executable)


def load_script(name: str):
    """scripts/<name>.py as a module (scripts are not a package)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

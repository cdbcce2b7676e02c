"""cunet.train: the tiny config learns, end-to-end runs write their artefacts, valid
tracks never reach training, tf.distribute over two logical CPUs, and resuming a
killed run loses no epoch and repeats none.

All data is synthesized (see `make_synthetic_musdb` in conftest.py). The CLI
runs (MirroredStrategy over two logical CPUs, SIGKILL and resume) run in
subprocesses and take about a minute each.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import TRAIN_NAMES, VALID_NAMES, make_synthetic_musdb, musdb_validation_names

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def musdb_root(tmp_path_factory) -> Path:
    return make_synthetic_musdb(tmp_path_factory.mktemp("musdb"))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory, musdb_root, tiny_config) -> Path:
    """A cache of every synthetic track, built once and shared by all runs of this module."""
    from cunet.data import build_cache, open_musdb

    cache = tmp_path_factory.mktemp("cache")
    tracks = open_musdb(musdb_root, "train", None, is_wav=True)
    build_cache(tracks, cache, tiny_config.audio, tiny_config.model.instruments, progress=False)
    return cache


def small_config(base, **train):
    return dataclasses.replace(base, train=dataclasses.replace(base.train, **train))


def read_history_csv(path: Path) -> list[int]:
    with open(path, newline="") as fh:
        return [int(row["epoch"]) for row in csv.DictReader(fh)]


def write_config(path: Path, config) -> Path:
    path.write_text(yaml.safe_dump(config.to_dict()))
    return path


def cli_train(config_path: Path, musdb_root: Path, out: Path, cache_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cunet.cli", "train", "--config", str(config_path), "--musdb-root",
            str(musdb_root), "--out", str(out), "--cache-dir", str(cache_dir), "--is-wav", "--verbose", "2", *extra]


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}


def assert_every_epoch_once(out: Path, epochs: int) -> None:
    assert read_history_csv(out / "history.csv") == list(range(epochs))
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["status"] == "complete"
    assert [h["epoch"] for h in provenance["metrics"]["history"]] == list(range(1, epochs + 1))
    assert provenance["metrics"]["epochs_done"] == epochs


# --------------------------------------------------------------------------- learning


def test_tiny_config_loss_decreases_on_a_fixed_batch(cache_dir, musdb_root, tiny_config):
    import keras

    from cunet.data import PatchSampler, build_cache, open_musdb
    from cunet.models import build_model

    cfg = tiny_config
    tracks = build_cache(open_musdb(musdb_root, "train", "train", is_wav=True), cache_dir, cfg.audio,
                         cfg.model.instruments, progress=False)
    mag, cond, target = PatchSampler(tracks, cfg.model.n_frames, cfg.train, 4, seed=0).batch(0, 4)
    inputs = {"magnitude": mag, "condition": cond}
    keras.utils.set_random_seed(0)
    model = build_model(cfg)
    model.compile(optimizer=keras.optimizers.Adam(cfg.train.learning_rate), loss="mean_absolute_error")
    before = float(model.evaluate(inputs, target, verbose=0))
    history = [float(model.train_on_batch(inputs, target)) for _ in range(30)]
    after = float(model.evaluate(inputs, target, verbose=0))
    assert len(history) == 30 and np.isfinite(history).all()
    assert np.mean(history[-5:]) < 0.9 * np.mean(history[:5]), history
    assert np.polyfit(np.arange(30), history, 1)[0] < 0, history  # a downward trend, not one lucky step
    assert after < 0.85 * before, (before, after)


# --------------------------------------------------------------------------- end to end


def test_train_end_to_end(tmp_path, musdb_root, cache_dir, tiny_config, capsys):
    from cunet.provenance import read_provenance
    from cunet.modelio import load_keras_model
    from cunet.train import train

    cfg = small_config(tiny_config, steps_per_epoch=3, epochs=2)
    out = tmp_path / "run"
    provenance = train(cfg, musdb_root, out, cache_dir=cache_dir, is_wav=True, verbose=0)

    for name in ("best.keras", "last.keras", "history.csv", "provenance.json"):
        assert (out / name).is_file(), name
    assert any((out / "logs").rglob("*tfevents*"))
    assert not (out / "backup").exists()  # deleted once training completes
    assert read_history_csv(out / "history.csv") == [0, 1]

    on_disk = json.loads((out / "provenance.json").read_text())
    assert on_disk == json.loads(json.dumps(provenance, default=str))
    assert on_disk["status"] == "complete"
    assert on_disk["config"] == cfg.to_dict()
    assert "git_commit" in on_disk
    for package in ("tensorflow", "keras", "numpy", "musdb", "python"):
        assert on_disk["packages"][package], package
    assert sorted(on_disk["data"]["train_tracks"]) == sorted(TRAIN_NAMES)
    assert sorted(on_disk["data"]["valid_tracks"]) == sorted(VALID_NAMES)
    assert not set(on_disk["data"]["train_tracks"]) & musdb_validation_names()
    assert on_disk["data"]["n_valid_patches"] > 0
    metrics = on_disk["metrics"]
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert metrics["epochs_done"] == 2
    assert metrics["best_val_loss"] == pytest.approx(min(h["val_loss"] for h in metrics["history"]))
    assert on_disk["strategy"] and on_disk["n_replicas"] == 1
    assert on_disk["n_parameters"] > 0

    # Checkpoints carry their provenance and load as cunet models.
    for name in ("best.keras", "last.keras"):
        embedded = read_provenance(out / name)
        assert embedded["config"] == cfg.to_dict()
        assert embedded["data"]["train_tracks"] == on_disk["data"]["train_tracks"]
    model, config, _ = load_keras_model(out / "last.keras")
    assert config == cfg and model.count_params() == on_disk["n_parameters"]
    assert read_provenance(out / "best.keras")["metrics"]["best_epoch"] == metrics["best_epoch"]

    # A completed run is not trained again.
    capsys.readouterr()
    again = train(cfg, musdb_root, out, cache_dir=cache_dir, is_wav=True, verbose=0)
    assert again["status"] == "complete" and "already complete" in capsys.readouterr().out
    assert read_history_csv(out / "history.csv") == [0, 1]


def test_train_refuses_valid_tracks_in_training_split(tmp_path, musdb_root, cache_dir, tiny_config, monkeypatch):
    """If the train split ever contained a valid track, train() stops before touching any data."""
    import cunet.data as data

    real_open = data.open_musdb

    def leaky_open(root, subsets="train", split="train", is_wav=False):
        return real_open(root, subsets, None if split == "train" else split, is_wav)  # train = everything

    monkeypatch.setattr(data, "open_musdb", leaky_open)
    from cunet.train import train

    with pytest.raises(RuntimeError, match="valid tracks found in the training split"):
        train(tiny_config, musdb_root, tmp_path / "run", cache_dir=tmp_path / "cache", is_wav=True, verbose=0)
    assert not (tmp_path / "cache").exists()


def test_train_missing_root(tmp_path, tiny_config):
    from cunet.train import train

    with pytest.raises(FileNotFoundError):
        train(tiny_config, tmp_path / "missing", tmp_path / "run", cache_dir=tmp_path / "cache", verbose=0)


# --------------------------------------------------------------------------- resume


class _Crash(Exception):
    pass


def test_resume_after_crash_at_epoch_boundary(tmp_path, musdb_root, cache_dir, tiny_config, monkeypatch, capsys):
    """The worst moment to die: epoch 2's logs and checkpoints are written, the backup is not.

    The restart must re-run exactly the epochs the backup does not cover, and
    history.csv / provenance must still list every epoch exactly once.
    """
    import keras

    import cunet.train as train_module

    cfg = small_config(tiny_config, steps_per_epoch=4, epochs=3)
    out = tmp_path / "run"
    real_callbacks = train_module._callbacks

    class CrashAfterLogs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise _Crash()

    def crashing_callbacks(*args, **kwargs):
        callbacks = list(real_callbacks(*args, **kwargs))
        # Right after the last logger/checkpoint writer, before anything that follows it (the backup).
        writers = [i for i, cb in enumerate(callbacks)
                   if isinstance(cb, keras.callbacks.CSVLogger) or type(cb).__name__ == "Checkpoints"]
        callbacks.insert(max(writers) + 1, CrashAfterLogs())
        return callbacks

    monkeypatch.setattr(train_module, "_callbacks", crashing_callbacks)
    with pytest.raises(_Crash):
        train_module.train(cfg, musdb_root, out, cache_dir=cache_dir, is_wav=True, verbose=0)
    assert (out / "backup" / "training_metadata.json").exists()
    assert read_history_csv(out / "history.csv") == [0, 1]
    assert json.loads((out / "provenance.json").read_text())["status"] == "running"

    monkeypatch.setattr(train_module, "_callbacks", real_callbacks)
    capsys.readouterr()
    train_module.train(cfg, musdb_root, out, cache_dir=cache_dir, is_wav=True, verbose=0)
    assert "resuming from epoch" in capsys.readouterr().out
    assert_every_epoch_once(out, 3)


def test_resume_after_sigkill_mid_epoch(tmp_path, musdb_root, cache_dir, tiny_config):
    """`cunet train` killed with SIGKILL during an epoch; the same command resumes and finishes."""
    epochs = 4
    cfg = small_config(tiny_config, steps_per_epoch=12, epochs=epochs)
    config_path = write_config(tmp_path / "resume.yaml", cfg)
    out = tmp_path / "run"
    command = cli_train(config_path, musdb_root, out, cache_dir)
    meta = out / "backup" / "training_metadata.json"

    proc = subprocess.Popen(command, cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    killed_at = None
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                state = json.loads(meta.read_text())
            except (OSError, ValueError):
                state = None
            # A mid-epoch backup of epoch >= 1 (epoch 0 finished and logged).
            if state and state["epoch"] >= 1 and state.get("batch", 0) > 0:
                proc.send_signal(signal.SIGKILL)
                killed_at = state
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None and killed_at is None:
            proc.kill()
        first_output = proc.communicate(timeout=60)[0]
    assert killed_at is not None, f"run never reached a mid-epoch backup:\n{first_output[-3000:]}"
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((out / "provenance.json").read_text())["status"] == "running"
    epochs_before = read_history_csv(out / "history.csv")
    assert epochs_before and len(epochs_before) < epochs

    second = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=400)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming from epoch" in second.stdout
    resumed_at = int(second.stdout.split("resuming from epoch", 1)[1].split()[0])
    assert 1 <= resumed_at <= killed_at["epoch"] + 1
    # Only the epochs after the backup were run again.
    assert second.stdout.count("Epoch ") == epochs - resumed_at
    assert_every_epoch_once(out, epochs)
    assert not (out / "backup").exists()


# --------------------------------------------------------------------------- tf.distribute


def test_mirrored_strategy_on_two_logical_cpus(tmp_path, musdb_root, cache_dir, tiny_config):
    cfg = small_config(tiny_config, steps_per_epoch=2, epochs=2)
    config_path = write_config(tmp_path / "mirrored.yaml", cfg)
    out = tmp_path / "run"
    command = cli_train(config_path, musdb_root, out, cache_dir, "--logical-cpus", "2", "--devices", "/cpu:0,/cpu:1")
    result = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["strategy"] == "MirroredStrategy"
    assert provenance["n_replicas"] == 2
    assert provenance["status"] == "complete"
    assert read_history_csv(out / "history.csv") == [0, 1]
    assert all(np.isfinite(h["loss"]) for h in provenance["metrics"]["history"])

"""cunet.training.loop and `cunet train`: end-to-end runs write their artefacts, valid tracks never
reach training, data errors are one line, resuming a crashed or killed run loses no epoch and
repeats none, tf.distribute over two logical CPUs, joint training with log input scaling, and
folder datasets through the CLI.

All data is synthesized (see conftest.py). The MUSDB18 root is cached once per session
(`musdb_cache`) and every run here reads that cache. The CLI runs with SIGKILL and with
MirroredStrategy run in subprocesses and take about a minute each.
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
from conftest import TRAIN_NAMES, VALID_NAMES, musdb_validation_names, synth_stems, write_track

from cunet.cli import main
from cunet.data import parse_data_spec
from cunet.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cache_dir(musdb_cache) -> Path:
    return musdb_cache[0]


@pytest.fixture(scope="module")
def musdb_spec(musdb_root):
    return parse_data_spec(f"{musdb_root},wav")


def small_config(base, model: dict | None = None, **train):
    return dataclasses.replace(
        base,
        model=dataclasses.replace(base.model, **(model or {})),
        train=dataclasses.replace(base.train, **train),
    ).validate()


def read_history_csv(path: Path) -> list[int]:
    with open(path, newline="") as fh:
        return [int(row["epoch"]) for row in csv.DictReader(fh)]


def write_config(path: Path, config) -> Path:
    path.write_text(yaml.safe_dump(config.to_dict()))
    return path


def cli_train(
    config_path: Path, musdb_root: Path, out: Path, cache_dir: Path, *extra: str
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cunet.cli",
        "train",
        "--config",
        str(config_path),
        "--data",
        f"{musdb_root},wav",
        "--out",
        str(out),
        "--cache-dir",
        str(cache_dir),
        "--verbose",
        "2",
        *extra,
    ]


def subprocess_env() -> dict[str, str]:
    return {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }


def assert_every_epoch_once(out: Path, epochs: int) -> None:
    assert read_history_csv(out / "history.csv") == list(range(epochs))
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["status"] == "complete"
    assert [h["epoch"] for h in provenance["metrics"]["history"]] == list(range(1, epochs + 1))
    assert provenance["metrics"]["epochs_done"] == epochs


# --------------------------------------------------------------------------- end to end


def test_train_end_to_end(tmp_path, musdb_root, musdb_spec, cache_dir, tiny_config, capsys):
    from cunet.engines.loading import load_keras_model
    from cunet.provenance import read_provenance
    from cunet.training.loop import train

    cfg = small_config(tiny_config, steps_per_epoch=3, epochs=2)
    out = tmp_path / "run"
    provenance = train(cfg, [musdb_spec], out, cache_dir=cache_dir, verbose=0)

    for name in ("best.keras", "last.keras", "best.json", "history.csv", "provenance.json"):
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
    data = on_disk["data"]
    (source,) = data["sources"]
    assert (
        source["path"] == str(musdb_root.resolve()) and source["is_wav"] and source["weight"] == 1.0
    )
    assert sorted(source["train_tracks"]) == sorted(TRAIN_NAMES)
    assert sorted(source["valid_tracks_used"]) == sorted(VALID_NAMES)
    assert not set(source["train_tracks"]) & musdb_validation_names()
    assert (data["n_train_tracks"], data["n_valid_tracks"]) == (len(TRAIN_NAMES), len(VALID_NAMES))
    assert data["n_valid_patches"] > 0
    metrics = on_disk["metrics"]
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert metrics["epochs_done"] == 2
    for entry in metrics["history"]:
        assert {"loss", "val_loss", "val_sdr", "learning_rate"} <= set(entry)
        per_instrument = [entry[f"val_sdr_{name}"] for name in cfg.model.instruments]
        assert np.isfinite(per_instrument).all() and entry["val_sdr"] == pytest.approx(
            np.mean(per_instrument)
        )
    assert metrics["selected_by"] == "val_sdr"
    assert metrics["best_value"] == pytest.approx(max(h["val_sdr"] for h in metrics["history"]))
    assert metrics["history"][metrics["best_epoch"] - 1]["val_sdr"] == metrics["best_value"]
    assert json.loads((out / "best.json").read_text())["epoch"] == metrics["best_epoch"]
    assert on_disk["strategy"] and on_disk["n_replicas"] == 1
    assert on_disk["n_parameters"] > 0
    with open(out / "history.csv", newline="") as fh:
        assert {"val_sdr", "val_sdr_vocals"} <= set(next(csv.DictReader(fh)))

    # Checkpoints carry their provenance and load as cunet models.
    for name in ("best.keras", "last.keras"):
        embedded = read_provenance(out / name)
        assert embedded["config"] == cfg.to_dict()
        assert embedded["data"]["sources"] == data["sources"]
    model, config, _ = load_keras_model(out / "last.keras")
    assert config == cfg and model.count_params() == on_disk["n_parameters"]
    assert read_provenance(out / "best.keras")["metrics"]["best_epoch"] == metrics["best_epoch"]

    # A completed run is not trained again.
    capsys.readouterr()
    again = train(cfg, [musdb_spec], out, cache_dir=cache_dir, verbose=0)
    assert again["status"] == "complete" and "already complete" in capsys.readouterr().out
    assert read_history_csv(out / "history.csv") == [0, 1]


def test_time_limit_pauses_and_the_same_call_continues(
    tmp_path, musdb_spec, cache_dir, tiny_config
):
    """A run stopped by the time limit keeps its backup, says it is paused, and the next call
    finishes it: every epoch once, the cosine schedule continued from the optimizer's step count."""
    from cunet.training.loop import train

    steps, epochs = 3, 3
    cfg = small_config(
        tiny_config,
        steps_per_epoch=steps,
        epochs=epochs,
        lr_schedule="cosine",
        learning_rate=1e-3,
        final_learning_rate=1e-4,
    )
    out = tmp_path / "run"
    paused = train(cfg, [musdb_spec], out, cache_dir=cache_dir, verbose=0, max_minutes=1e-6)
    assert paused["status"] == "paused" and paused["metrics"]["epochs_done"] == 1
    assert (out / "backup" / "training_metadata.json").exists()
    assert json.loads((out / "provenance.json").read_text())["status"] == "paused"

    # Another model cannot continue this run's backup: refused before anything is touched.
    other = small_config(cfg, model={"first_filters": cfg.model.first_filters * 2})
    with pytest.raises(DataError, match="started with other model settings"):
        train(other, [musdb_spec], out, cache_dir=cache_dir, verbose=0)
    # The same call again; the limit trips after every epoch, but a run with all its epochs is complete.
    train(cfg, [musdb_spec], out, cache_dir=cache_dir, verbose=0, max_minutes=1e-6)
    train(cfg, [musdb_spec], out, cache_dir=cache_dir, verbose=0, max_minutes=1e-6)
    assert_every_epoch_once(out, epochs)
    assert not (out / "backup").exists()
    history = json.loads((out / "provenance.json").read_text())["metrics"]["history"]
    total = epochs * steps
    expected = [
        1e-4 + (1e-3 - 1e-4) * 0.5 * (1 + np.cos(np.pi * e * steps / total))
        for e in range(1, epochs + 1)
    ]
    np.testing.assert_allclose([h["learning_rate"] for h in history], expected, rtol=1e-4)


@pytest.mark.slow  # log input is covered by test_training_trainer in the default run
def test_joint_training_with_log_input_scaling(
    tmp_path, musdb_spec, cache_dir, tiny_config, monkeypatch
):
    """Joint conditions, ratio masks, SDR loss, log input scaling and selection by loss, end to end.

    The InputScaling layer holds the training data's statistics before the first step."""
    import cunet.training.loop as loop
    from cunet.training.loop import train
    from cunet.training.trainer import SeparationTrainer

    stats, at_fit = [], []
    real_stats, real_fit = loop.input_statistics, SeparationTrainer.fit

    def spy_stats(sampler, *args, **kwargs):
        stats.append(real_stats(sampler, *args, **kwargs))
        return stats[-1]

    def spy_fit(self, *args, **kwargs):
        at_fit.append([w.copy() for w in self.network.get_layer("input_scaling").get_weights()])
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(loop, "input_statistics", spy_stats)
    monkeypatch.setattr(SeparationTrainer, "fit", spy_fit)
    cfg = small_config(
        tiny_config,
        model={"input_scaling": "log", "postprocess": "ratio"},
        joint=True,
        sdr_loss_weight=0.05,
        select_by="loss",
        steps_per_epoch=2,
        epochs=2,
    )
    out = tmp_path / "run"
    provenance = train(cfg, [musdb_spec], out, cache_dir=cache_dir, verbose=0)

    (mean_std,) = stats
    (weights,) = at_fit
    mean, std = mean_std
    assert mean.shape == (cfg.audio.n_bins,) and np.ptp(mean) > 0
    np.testing.assert_allclose(weights[0], mean, rtol=1e-6)
    np.testing.assert_allclose(weights[1], 1 / np.maximum(std, 1e-3), rtol=1e-5)
    metrics = provenance["metrics"]
    assert metrics["selected_by"] == "val_loss"
    assert metrics["best_value"] == pytest.approx(min(h["val_loss"] for h in metrics["history"]))
    assert all(np.isfinite(h["loss"]) and np.isfinite(h["val_sdr"]) for h in metrics["history"])
    assert provenance["data"]["n_valid_patches"] > 0  # joint: one patch row per mixture


# --------------------------------------------------------------------------- data errors


def test_train_refuses_valid_tracks_in_training_split(
    tmp_path, musdb_spec, tiny_config, monkeypatch
):
    """If the train split ever contained a valid track, train() stops before touching any data."""
    import cunet.data.sources as sources
    from cunet.training.loop import train

    real_open = sources.open_musdb

    def leaky_open(root, subsets="train", split="train", is_wav=False):
        return real_open(
            root, subsets, None if split == "train" else split, is_wav
        )  # train = everything

    monkeypatch.setattr(sources, "open_musdb", leaky_open)
    with pytest.raises(DataError, match="valid tracks found in the training split"):
        train(tiny_config, [musdb_spec], tmp_path / "run", cache_dir=tmp_path / "cache", verbose=0)
    assert not (tmp_path / "cache").exists()


def test_train_data_errors(tmp_path, tiny_config):
    from cunet.training.loop import train

    with pytest.raises(DataError, match="is not a directory"):
        train(
            tiny_config,
            [parse_data_spec(str(tmp_path / "missing"))],
            tmp_path / "run",
            cache_dir=tmp_path / "cache",
            verbose=0,
        )
    write_track(tmp_path / "one" / "train" / "only", synth_stems(0.5, 44100, 0))
    with pytest.raises(DataError, match="no validation tracks"):
        train(
            tiny_config,
            [parse_data_spec(str(tmp_path / "one"))],
            tmp_path / "run",
            cache_dir=tmp_path / "cache",
            verbose=0,
        )
    assert not (tmp_path / "cache").exists()


def test_cli_data_errors_are_one_line(tmp_path, capsys):
    config = str(ROOT / "configs" / "tiny.yaml")
    cases = [
        (
            ["--data", str(tmp_path / "missing")],
            f"data folder '{tmp_path / 'missing'}' is not a directory",
        ),
        (["--musdb-root", str(tmp_path / "missing")], "is not a directory"),
        (
            ["--data", f"{tmp_path},weight=zero"],
            f"bad option 'weight=zero' in data spec '{tmp_path},weight=zero'",
        ),
        ([], "no training data: give --data PATH (or --musdb-root DIR)"),
    ]
    for extra, message in cases:
        capsys.readouterr()
        assert (
            main(
                [
                    "train",
                    "--config",
                    config,
                    "--out",
                    str(tmp_path / "run"),
                    "--cache-dir",
                    str(tmp_path / "cache"),
                    *extra,
                ]
            )
            == 2
        ), extra
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], captured.err
        assert "Traceback" not in captured.out + captured.err


def test_cli_missing_root_in_a_subprocess(tmp_path):
    """What a user sees: one `error:` line on stderr, exit status 2, no traceback."""
    command = [
        sys.executable,
        "-m",
        "cunet.cli",
        "train",
        "--config",
        str(ROOT / "configs" / "tiny.yaml"),
        "--data",
        str(tmp_path / "missing"),
        "--out",
        str(tmp_path / "run"),
        "--cache-dir",
        str(tmp_path),
    ]
    result = subprocess.run(
        command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: data folder '{tmp_path / 'missing'}' is not a directory"
    ]
    assert "Traceback" not in result.stdout


# --------------------------------------------------------------------------- folder datasets through the CLI


def test_cli_trains_on_folder_dataset_and_clips(tmp_path, tiny_config, capsys):
    stems = tmp_path / "stems"
    for seed, name in enumerate(["song a", "song b", "song c"]):
        parts = synth_stems(1.0, 44100, seed)
        parts["guitar"] = parts.pop("other")
        write_track(stems / "train" / name, parts, mixture=sum(parts.values()))
    mix = synth_stems(1.0, 44100, 9)
    write_track(
        stems / "train" / "song d",
        {"vocals": mix["vocals"], "other": mix["other"]},
        mixture=mix["vocals"],
    )  # its own mixture lacks the `other` stem
    teacher = {"teacher": "a model", "songs": [{"file": "song a.wav", "licence": "CC BY-NC 3.0"}]}
    (stems / "teacher.json").write_text(json.dumps(teacher))
    for i in range(3):
        write_track(
            tmp_path / "clips" / f"take {i}",
            {"voice": synth_stems(0.8, 22050, i)["vocals"][:, :1]},
            sample_rate=22050,
        )
    cfg = small_config(tiny_config, steps_per_epoch=2, epochs=1)
    config_path = write_config(tmp_path / "tiny.yaml", cfg)
    out = tmp_path / "run"
    capsys.readouterr()
    code = main(
        [
            "train",
            "--config",
            str(config_path),
            "--data",
            f"{stems},rename=guitar:other,valid=1",
            "--data",
            f"{tmp_path / 'clips'},stem=vocals,weight=0.5",
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--verbose",
            "0",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    notes = [line for line in captured.err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and f"in '{stems}'" in notes[0] and "(e.g. 'song d')" in notes[0], (
        captured.err
    )
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["status"] == "complete" and (out / "best.keras").exists()
    folder, clips = provenance["data"]["sources"]
    assert folder["rename"] == [["guitar", "other"]] and folder["valid_tracks"] == 1
    assert len(folder["train_tracks"]) == 3 and len(folder["valid_tracks_used"]) == 1
    assert clips["stem"] == "vocals" and clips["weight"] == 0.5
    assert sorted(clips["train_tracks"]) == [f"take {i}/voice.wav" for i in range(3)]
    assert clips["valid_tracks_used"] == []
    assert folder["teacher"] == teacher and "teacher" not in clips  # labels' origin and licences
    assert np.isfinite(provenance["metrics"]["history"][0]["loss"])
    # The low-rate mono clips are cached as one channel and only their band.
    clip_cache = next((tmp_path / "cache").glob("stft-*/clips-*/take_0_voice.wav"))
    assert np.load(clip_cache / "vocals.npy", mmap_mode="r").shape[::2] == (1, 66)


# --------------------------------------------------------------------------- resume


class _Crash(Exception):
    pass


def test_resume_after_crash_at_epoch_boundary(
    tmp_path, musdb_spec, cache_dir, tiny_config, monkeypatch, capsys
):
    """The worst moment to die: epoch 2's logs and checkpoints are written, the backup is not.

    The restart must re-run exactly the epochs the backup does not cover, and
    history.csv / provenance must still list every epoch exactly once.
    """
    import keras

    import cunet.training.loop as loop
    from cunet.training.loop import train

    cfg = small_config(tiny_config, steps_per_epoch=4, epochs=3)
    out = tmp_path / "run"
    real_callbacks = loop.run_callbacks

    class CrashAfterLogs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise _Crash()

    def crashing_callbacks(*args, **kwargs):
        callbacks = list(real_callbacks(*args, **kwargs))
        # Right after the last logger/checkpoint writer, before anything that follows it (the backup).
        writers = [
            i
            for i, cb in enumerate(callbacks)
            if isinstance(cb, keras.callbacks.CSVLogger) or type(cb).__name__ == "Checkpoints"
        ]
        callbacks.insert(max(writers) + 1, CrashAfterLogs())
        return callbacks

    monkeypatch.setattr(loop, "run_callbacks", crashing_callbacks)
    with pytest.raises(_Crash):
        train(cfg, [musdb_spec], out, cache_dir=cache_dir, verbose=0)
    assert (out / "backup" / "training_metadata.json").exists()
    assert read_history_csv(out / "history.csv") == [0, 1]
    assert json.loads((out / "provenance.json").read_text())["status"] == "running"
    best_before = json.loads((out / "best.json").read_text())

    monkeypatch.setattr(loop, "run_callbacks", real_callbacks)
    capsys.readouterr()
    train(cfg, [musdb_spec], out, cache_dir=cache_dir, verbose=0)
    assert "resuming from epoch" in capsys.readouterr().out
    assert_every_epoch_once(out, 3)
    best_after = json.loads((out / "best.json").read_text())
    assert best_after["value"] >= best_before["value"]  # the best value survived the restart


@pytest.mark.slow  # resuming is covered by test_resume_after_crash_at_epoch_boundary in the default run
def test_resume_after_sigkill_mid_epoch(tmp_path, musdb_root, cache_dir, tiny_config):
    """`cunet train` killed with SIGKILL during an epoch; the same command resumes and finishes."""
    epochs = 4
    cfg = small_config(tiny_config, steps_per_epoch=12, epochs=epochs)
    config_path = write_config(tmp_path / "resume.yaml", cfg)
    out = tmp_path / "run"
    command = cli_train(config_path, musdb_root, out, cache_dir)
    meta = out / "backup" / "training_metadata.json"

    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
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

    second = subprocess.run(
        command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=400
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming from epoch" in second.stdout
    resumed_at = int(second.stdout.split("resuming from epoch", 1)[1].split()[0])
    assert 1 <= resumed_at <= killed_at["epoch"] + 1
    # Only the epochs after the backup were run again.
    assert second.stdout.count("Epoch ") == epochs - resumed_at
    assert_every_epoch_once(out, epochs)
    assert not (out / "backup").exists()


# --------------------------------------------------------------------------- tf.distribute


@pytest.mark.slow  # two logical CPUs double a training run's time
def test_mirrored_strategy_on_two_logical_cpus(tmp_path, musdb_root, cache_dir, tiny_config):
    cfg = small_config(
        tiny_config,
        steps_per_epoch=2,
        epochs=2,
        batch_size=8,
        joint=True,
        model={"postprocess": "ratio"},
    )  # 2 mixtures x 4 conditions: one mixture per replica
    config_path = write_config(tmp_path / "mirrored.yaml", cfg)
    out = tmp_path / "run"
    command = cli_train(
        config_path, musdb_root, out, cache_dir, "--logical-cpus", "2", "--devices", "/cpu:0,/cpu:1"
    )
    result = subprocess.run(
        command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=400
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["strategy"] == "MirroredStrategy"
    assert provenance["n_replicas"] == 2
    assert provenance["status"] == "complete"
    assert read_history_csv(out / "history.csv") == [0, 1]
    assert all(
        np.isfinite(h["loss"]) and np.isfinite(h["val_sdr"])
        for h in provenance["metrics"]["history"]
    )


# `cunet train` with TensorFlow, musdb and museval made unimportable, as on a GPU machine with JAX only.
_WITHOUT_TF = (
    "import importlib.abc, sys\n"
    "class Block(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('tensorflow', 'musdb', 'museval'):\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, Block())\n"
    "from cunet.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def test_trains_on_jax_without_tensorflow_and_the_model_loads_on_tensorflow(tmp_path, tiny_config):
    pytest.importorskip("jax")
    from conftest import make_folder_dataset

    from cunet.engines.loading import load_keras_model

    data = make_folder_dataset(tmp_path / "stems", ["a", "b"], ["v"], seconds=1.5)
    cfg = small_config(
        tiny_config,
        model={"film_placement": "decoder", "postprocess": "ratio"},
        steps_per_epoch=2,
        epochs=2,
        joint=True,
        sdr_loss_weight=0.05,
        ema_momentum=0.9,
    )
    config_path = write_config(tmp_path / "tiny.yaml", cfg)
    out = tmp_path / "run"
    args = ["train", "--config", str(config_path), "--data", str(data), "--out", str(out)]
    args += ["--cache-dir", str(tmp_path / "cache"), "--verbose", "0", "--max-minutes", "1e-6"]
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    # Paused by the time limit after the first epoch, then continued by the same command.
    for status in ("paused", "complete"):
        proc = subprocess.run(
            [sys.executable, "-c", _WITHOUT_TF, *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads((out / "provenance.json").read_text())["status"] == status
    assert "resuming from epoch 1" in proc.stdout
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["status"] == "complete"
    assert provenance["backend"] == "jax" and provenance["strategy"] == "none"
    assert provenance["packages"]["jax"]
    assert read_history_csv(out / "history.csv") == [0, 1]
    model, config, record = load_keras_model(out / "best.keras")  # this process runs TensorFlow
    assert config.model.film_placement == "decoder" and record["backend"] == "jax"
    magnitude = np.random.default_rng(0).random((4, 128, 64, 2), dtype=np.float32)
    masks = model.predict(
        {"magnitude": magnitude, "condition": np.eye(4, dtype=np.float32)}, verbose=0
    )
    assert np.isfinite(masks).all() and masks.shape[0] == 4

"""Callbacks of a training run: checkpoints with provenance, a resumable backup, the time limit."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import keras

from ..config import Config, TrainConfig
from ..io.atomic import write_json_atomic, write_text_atomic
from ..provenance import save_model

BEST_FILE = "best.json"


def monitor_of(config: Config) -> tuple[str, str]:
    """(log key, "max" or "min") of the metric that selects checkpoints and drives the schedule."""
    return ("val_sdr", "max") if config.train.select_by == "sdr" else ("val_loss", "min")


def learning_rate(t: TrainConfig) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The optimizer's learning rate: a float that the plateau rule lowers, or a cosine schedule
    over the run's steps (driven by the optimizer's step count, so a resumed run continues it)."""
    if t.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            t.learning_rate,
            decay_steps=t.epochs * t.steps_per_epoch,
            alpha=t.final_learning_rate / t.learning_rate,
        )
    return t.learning_rate


class LearningRateLog(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to the epoch logs (the plateau rule does so itself)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            )


class Checkpoints(keras.callbacks.Callback):
    """Saves the trained network as last.keras every epoch and best.keras on a new best of the
    monitored metric, provenance embedded; stops when the time limit would be passed next epoch
    (`time_limited` then says so: such a run is paused, not finished)."""

    def __init__(
        self, out_dir: Path, provenance: dict[str, Any], monitor: str, mode: str, max_minutes: float
    ) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.provenance = provenance
        self.monitor, self.mode = monitor, mode
        self.max_minutes = max_minutes
        best_file = out_dir / BEST_FILE
        saved = json.loads(best_file.read_text()) if best_file.exists() else {}
        self.best = saved.get("value", -math.inf if mode == "max" else math.inf)
        self.started = time.monotonic()
        self.time_limited = False
        self.epoch_times: list[float] = []
        self._epoch_start = time.monotonic()

    def _better(self, value: float) -> bool:
        return math.isfinite(value) and (
            value > self.best if self.mode == "max" else value < self.best
        )

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        self.epoch_times.append(time.monotonic() - self._epoch_start)
        metrics = self.provenance["metrics"]
        metrics.setdefault("history", []).append(
            {
                "epoch": epoch + 1,
                **{k: float(v) for k, v in logs.items()},
                "seconds": round(self.epoch_times[-1], 1),
            }
        )
        metrics["epochs_done"] = epoch + 1
        metrics["train_minutes"] = round(
            sum(h.get("seconds", 0.0) for h in metrics["history"]) / 60, 1
        )
        network = self.model.network
        value = float(logs.get(self.monitor, math.nan))
        if self._better(value):
            self.best = value
            metrics.update(best_epoch=epoch + 1, selected_by=self.monitor, best_value=value)
            save_model(network, self.out_dir / "best.keras", self.provenance)
            write_json_atomic(
                self.out_dir / BEST_FILE,
                {"metric": self.monitor, "value": value, "epoch": epoch + 1},
            )
        save_model(network, self.out_dir / "last.keras", self.provenance)
        write_json_atomic(self.out_dir / "provenance.json", self.provenance)
        if self.max_minutes > 0:
            elapsed = (time.monotonic() - self.started) / 60
            if elapsed + max(self.epoch_times[-3:]) / 60 > self.max_minutes:
                print(
                    f"time limit of {self.max_minutes:g} min reached after epoch {epoch + 1}; stopping",
                    flush=True,
                )
                self.time_limited = True
                self.model.stop_training = True


class Backup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that also backs up at each epoch end; listed last, so a finished epoch is
    recorded in the backup only after its logs and checkpoints are written."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        if self.save_freq != "epoch":
            self._save_model()


def run_callbacks(
    config: Config,
    out_dir: Path,
    provenance: dict[str, Any],
    max_minutes: float,
    verbose: int,
    first: list[keras.callbacks.Callback],
) -> list[keras.callbacks.Callback]:
    """`first` (callbacks that add metrics to the logs), then the schedule, logs, checkpoints, backup."""
    t = config.train
    monitor, mode = monitor_of(config)
    # Keras writes TensorBoard logs through tf.summary: other backends get the CSV log alone.
    tensorboard = (
        [keras.callbacks.TensorBoard(str(out_dir / "logs"), write_graph=False, profile_batch=0)]
        if keras.backend.backend() == "tensorflow"
        else []
    )
    schedule: keras.callbacks.Callback = (
        LearningRateLog()
        if t.lr_schedule == "cosine"
        else keras.callbacks.ReduceLROnPlateau(
            monitor,
            factor=t.reduce_lr_factor,
            patience=t.reduce_lr_patience,
            mode=mode,
            verbose=verbose,
        )
    )
    return [
        *first,
        schedule,
        keras.callbacks.EarlyStopping(
            monitor, patience=t.early_stopping_patience, mode=mode, verbose=verbose
        ),
        keras.callbacks.CSVLogger(str(out_dir / "history.csv"), append=True),
        *tensorboard,
        Checkpoints(out_dir, provenance, monitor, mode, max_minutes),
        # Kept when training ends: a run paused by the time limit resumes from it (train() deletes
        # it once the run is complete).
        Backup(
            str(out_dir / "backup"),
            save_freq=max(1, t.steps_per_epoch // 4),
            double_checkpoint=True,
            delete_checkpoint=False,
        ),
    ]


def resume_epoch(backup: Path) -> int:
    """The epoch BackupAndRestore will resume at (0 without a backup).

    Metadata cut short by a kill falls back to the previous (double) checkpoint, as Keras does
    for unreadable weights; with no usable backup the run starts over.
    """
    meta = backup / "training_metadata.json"
    if not meta.exists():
        return 0
    for attempt in range(2):
        try:
            return int(json.loads(meta.read_text())["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            prev_meta, prev_weights = Path(f"{meta}.bkp"), backup / "latest.weights.h5.bkp"
            if attempt or not (prev_meta.exists() and prev_weights.exists()):
                break
            shutil.copyfile(prev_weights, backup / "latest.weights.h5")
            shutil.copyfile(prev_meta, meta)
    shutil.rmtree(backup, ignore_errors=True)
    return 0


def truncate_history(path: Path, n_epochs: int) -> None:
    """Keep only the CSV log rows of the first `n_epochs` epochs: a restart runs the later ones again."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    rows = [r for r in lines[1:] if r.strip()]
    kept = [r for r in rows if int(r.split(",", 1)[0]) < n_epochs]
    if not kept:
        path.unlink()
    elif len(kept) != len(rows):
        write_text_atomic(path, "".join(lines[:1] + kept))

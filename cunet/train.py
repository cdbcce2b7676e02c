"""Training on MUSDB18 with Keras `fit` under a tf.distribute strategy.

Run directory layout (`out_dir`):
    last.keras, best.keras   checkpoints with embedded provenance (every epoch / best valid loss)
    backup/                  BackupAndRestore state: a killed run restarted with the same command resumes here
    history.csv, logs/       CSV and TensorBoard logs
    provenance.json          config, git commit, package versions, tracks, metrics
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

from .config import Config
from .provenance import make_provenance, save_model, write_json_atomic


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cunet"


def split_cpu(n_devices: int) -> None:
    """Split the host CPU into `n_devices` logical devices (before TensorFlow initialises)."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * n_devices)


def select_strategy(devices: Sequence[str] | None = None):
    """MultiWorkerMirroredStrategy when TF_CONFIG is set; MirroredStrategy over `devices`
    or over several visible GPUs; otherwise the default (single-device) strategy."""
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if devices:
        return tf.distribute.MirroredStrategy(list(devices))
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _callbacks(config: Config, out_dir: Path, provenance: dict[str, Any], max_minutes: float, verbose: int):
    import keras

    class Checkpoints(keras.callbacks.Callback):
        """Saves last.keras every epoch and best.keras on a new best valid loss, provenance inside."""

        def __init__(self) -> None:
            super().__init__()
            best_file = out_dir / "best_val_loss.json"
            self.best = json.loads(best_file.read_text())["val_loss"] if best_file.exists() else float("inf")
            self.started = time.monotonic()
            self.epoch_times: list[float] = []
            self._epoch_start = time.monotonic()

        def on_epoch_begin(self, epoch: int, logs=None) -> None:
            self._epoch_start = time.monotonic()

        def on_epoch_end(self, epoch: int, logs=None) -> None:
            logs = dict(logs or {})
            logs.setdefault("learning_rate", float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
            self.epoch_times.append(time.monotonic() - self._epoch_start)
            history = provenance["metrics"].setdefault("history", [])
            history.append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}})
            provenance["metrics"]["epochs_done"] = epoch + 1
            val = float(logs.get("val_loss", float("inf")))
            if val < self.best:
                self.best = val
                provenance["metrics"].update(best_val_loss=val, best_epoch=epoch + 1)
                save_model(self.model, out_dir / "best.keras", provenance)
                write_json_atomic(out_dir / "best_val_loss.json", {"val_loss": val, "epoch": epoch + 1})
            save_model(self.model, out_dir / "last.keras", provenance)
            write_json_atomic(out_dir / "provenance.json", provenance)
            if max_minutes > 0:
                elapsed = (time.monotonic() - self.started) / 60
                typical = max(self.epoch_times[-3:]) / 60
                if elapsed + typical > max_minutes:
                    print(f"time limit of {max_minutes:g} min reached after epoch {epoch + 1}; stopping", flush=True)
                    self.model.stop_training = True

    class Backup(keras.callbacks.BackupAndRestore):
        """BackupAndRestore that also backs up at each epoch end; listed last, so a finished epoch is
        recorded in the backup only after its logs and checkpoints are written."""

        def on_epoch_end(self, epoch: int, logs=None) -> None:
            super().on_epoch_end(epoch, logs)
            if self.save_freq != "epoch":
                self._save_model()

    t = config.train
    return [
        keras.callbacks.ReduceLROnPlateau("val_loss", factor=t.reduce_lr_factor, patience=t.reduce_lr_patience,
                                          verbose=verbose),
        keras.callbacks.EarlyStopping("val_loss", patience=t.early_stopping_patience, verbose=verbose),
        keras.callbacks.CSVLogger(str(out_dir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(out_dir / "logs"), write_graph=False, profile_batch=0),
        Checkpoints(),
        Backup(str(out_dir / "backup"), save_freq=max(1, t.steps_per_epoch // 4), double_checkpoint=True),
    ]


def _resume_epoch(backup: Path) -> int:
    """The epoch BackupAndRestore will resume at (0 without a backup).

    Metadata cut short by a kill falls back to the previous (double) checkpoint, as Keras does
    for unreadable weights; with no usable backup the run starts over.
    """
    import shutil

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


def _truncate_history(path: Path, n_epochs: int) -> None:
    """Keep only the CSV log rows of the first `n_epochs` epochs: a restart runs the later ones again."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    rows = [r for r in lines[1:] if r.strip()]
    kept = [r for r in rows if int(r.split(",", 1)[0]) < n_epochs]
    if not kept:
        path.unlink()
    elif len(kept) != len(rows):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(lines[:1] + kept), encoding="utf-8")
        os.replace(tmp, path)


def train(config: Config, musdb_root: str | os.PathLike, out_dir: str | os.PathLike,
          cache_dir: str | os.PathLike | None = None, is_wav: bool = False,
          devices: Sequence[str] | None = None, max_minutes: float | None = None,
          verbose: int = 1, track_limit: int | None = None) -> dict[str, Any]:
    """Train `config` on MUSDB18 (subset "train": split "train" for fitting, "valid" for selection).

    Restarting with the same `out_dir` resumes from the last backup. Returns the provenance record.
    """
    import keras
    import tensorflow as tf

    from .data import PatchSampler, build_cache, open_musdb, train_dataset, validation_arrays
    from .models import build_model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prov_path = out_dir / "provenance.json"
    if prov_path.exists():
        previous = json.loads(prov_path.read_text())
        if previous.get("status") == "complete":
            print(f"run in '{out_dir}' is already complete; use another --out to train again", flush=True)
            return previous

    cfg = config
    train_tracks = open_musdb(musdb_root, "train", "train", is_wav)[:track_limit]
    valid_tracks = open_musdb(musdb_root, "train", "valid", is_wav)[:track_limit]
    train_names = [t.name for t in train_tracks]
    valid_names = [t.name for t in valid_tracks]
    overlap = set(train_names) & set(valid_names)
    if overlap:
        raise RuntimeError(f"valid tracks found in the training split: {sorted(overlap)}")
    if not train_tracks or not valid_tracks:
        raise RuntimeError(f"no tracks found under '{musdb_root}' (train: {len(train_tracks)}, "
                           f"valid: {len(valid_tracks)})")

    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    instruments = cfg.model.instruments
    cached_train = build_cache(train_tracks, cache_dir, cfg.audio, instruments, progress=verbose > 0)
    cached_valid = build_cache(valid_tracks, cache_dir, cfg.audio, instruments, progress=verbose > 0)

    conditioned = cfg.model.kind == "conditioned"
    fixed = None if conditioned else instruments.index(cfg.model.target)
    sampler = PatchSampler(cached_train, cfg.model.n_frames, cfg.train, len(instruments), cfg.train.seed, fixed)
    val_inputs, val_targets = validation_arrays(cached_valid, cfg.model.n_frames, len(instruments), fixed)

    # Resume: continue the batch stream where the backed-up epoch left it.
    first_epoch = _resume_epoch(out_dir / "backup")
    if (out_dir / "backup").exists():
        print(f"resuming from epoch {first_epoch} in '{out_dir}'", flush=True)
    _truncate_history(out_dir / "history.csv", first_epoch)

    keras.utils.set_random_seed(cfg.train.seed)
    strategy = select_strategy(devices)
    ds = train_dataset(sampler, cfg.train.batch_size, cfg.audio.n_bins, cfg.audio.n_channels, conditioned,
                       first_index=first_epoch * cfg.train.steps_per_epoch)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.with_options(options)

    with strategy.scope():
        model = build_model(cfg)
        model.compile(optimizer=keras.optimizers.Adam(cfg.train.learning_rate), loss="mean_absolute_error")

    provenance = make_provenance(
        cfg.to_dict(),
        data={"musdb_root": str(Path(musdb_root).resolve()), "is_wav": is_wav,
              "train_tracks": train_names, "valid_tracks": valid_names,
              "n_valid_patches": int(val_targets.shape[0])},
        metrics={}, status="running", n_parameters=int(model.count_params()),
        strategy=type(strategy).__name__, n_replicas=int(strategy.num_replicas_in_sync))
    if prov_path.exists():
        old = json.loads(prov_path.read_text())
        provenance["metrics"] = old.get("metrics", {})
        provenance["metrics"]["history"] = [h for h in provenance["metrics"].get("history", [])
                                            if h["epoch"] <= first_epoch]
    write_json_atomic(prov_path, provenance)

    limit = cfg.train.max_minutes if max_minutes is None else max_minutes
    callbacks = _callbacks(cfg, out_dir, provenance, limit, verbose)
    model.fit(ds, epochs=cfg.train.epochs, steps_per_epoch=cfg.train.steps_per_epoch,
              validation_data=(val_inputs, val_targets), validation_batch_size=cfg.train.batch_size,
              callbacks=callbacks, verbose=verbose)
    provenance["status"] = "complete"
    write_json_atomic(prov_path, provenance)
    return provenance

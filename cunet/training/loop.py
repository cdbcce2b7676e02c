"""Training with Keras `fit`: under a tf.distribute strategy with the TensorFlow backend (the default),
on one device with JAX or torch (KERAS_BACKEND), fed by `cunet.training.batches.PatchBatches` there.

Run directory layout (`out_dir`):
    last.keras, best.keras   the network, provenance embedded (every epoch / best selection metric)
    backup/                  BackupAndRestore state: a killed run, or one paused by the time limit,
                             resumes here when the same command runs again
    history.csv, logs/       CSV and TensorBoard logs
    provenance.json          config, git commit, package versions, data, metrics
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras

from ..config import Config
from ..data import PatchSampler, build_cache, open_sources, train_dataset, validation_batches
from ..data.pipeline import split_inputs_targets
from ..data.sources import TEACHER_RECORD, DataSpec
from ..engines.loading import load_keras_model, resolve_model_path
from ..errors import DataError, ModelError, literal
from ..io.atomic import write_json_atomic
from ..nn.models import build_model
from ..provenance import make_provenance
from .batches import PatchBatches
from .callbacks import Checkpoints, learning_rate, resume_epoch, run_callbacks, truncate_history
from .finetune import check_compatible, copy_weights, parent_record
from .trainer import SeparationTrainer
from .validation import ValidationSDR, input_statistics


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cunet"


def split_cpu(n_devices: int) -> None:
    """Split the host CPU into `n_devices` logical devices (before TensorFlow initialises)."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * n_devices
    )


def select_strategy(devices: Sequence[str] | None = None) -> Any:
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


def describe_data(specs: Sequence[DataSpec], splits: dict[str, list]) -> dict[str, Any]:
    """The provenance record of the data: every source with its options and its tracks by split."""
    sources = []
    for spec in specs:
        mine = {
            s: [t.name for t in tracks if t.source_id == spec.source_id]
            for s, tracks in splits.items()
        }
        sources.append(
            {
                "path": str(spec.path.resolve()),
                "stem": spec.stem,
                "rename": [list(r) for r in spec.rename],
                "weight": spec.weight,
                "valid_tracks": spec.valid_tracks,
                "is_wav": spec.is_wav,
                "train_tracks": mine["train"],
                "valid_tracks_used": mine["valid"],
            }
        )
        teacher = spec.path / TEACHER_RECORD  # labels and licences of a teacher-labelled source
        if teacher.is_file():
            sources[-1]["teacher"] = json.loads(teacher.read_text())
    return {
        "sources": sources,
        "n_train_tracks": len(splits["train"]),
        "n_valid_tracks": len(splits["valid"]),
    }


def train(
    config: Config,
    data: Sequence[DataSpec],
    out_dir: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    devices: Sequence[str] | None = None,
    max_minutes: float | None = None,
    verbose: int = 1,
    track_limit: int | None = None,
    init_from: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train `config` on the `data` sources (their train splits for fitting, valid splits for selection).

    init_from: a trained model to start from ("default": the shipped one), see `cunet.training.finetune`.
    Restarting with the same `out_dir` resumes from the last backup. Returns the provenance record.
    Raises DataError when the data or the parent model cannot be used.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prov_path = out_dir / "provenance.json"
    if prov_path.exists():
        previous = json.loads(prov_path.read_text())
        if previous.get("status") == "complete":
            print(
                f"run in '{out_dir}' is already complete; use another --out to train again",
                flush=True,
            )
            return previous
        # A backup holds weights of the run's own model: resuming it under another one cannot work.
        # The JSON round trip compares the config as provenance.json holds it (lists, not tuples).
        now = json.loads(json.dumps(config.to_dict()))
        changed = [k for k in ("audio", "model") if previous.get("config", {}).get(k) != now[k]]
        if changed and (out_dir / "backup").exists():
            raise DataError(
                f"the run in '{literal(out_dir)}' was started with other {' and '.join(changed)} "
                "settings: continue it with its own config, or train into another --out"
            )

    cfg = config
    parent = _load_parent(init_from, cfg) if init_from is not None else None
    splits = open_sources(data, cfg.train.seed)
    splits = {s: tracks[:track_limit] for s, tracks in splits.items()}
    if not splits["valid"]:
        raise DataError(
            "no validation tracks: give a source with a valid split, or hold some out with valid=N"
        )
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    cached = build_cache(
        [*splits["train"], *splits["valid"]],
        cache_dir,
        cfg.audio,
        progress=verbose > 0,
        workers=min(8, os.cpu_count() or 1),
    )
    cached_train, cached_valid = cached[: len(splits["train"])], cached[len(splits["train"]) :]

    instruments = cfg.model.instruments
    fixed = None if cfg.model.conditioned else instruments.index(cfg.model.target)
    t = cfg.train
    sampler = PatchSampler(
        cached_train,
        cfg.model.n_frames,
        t,
        instruments,
        cfg.audio.n_bins,
        cfg.audio.n_channels,
        t.seed,
        fixed,
        joint=t.joint,
        with_complex=t.sdr_loss_weight > 0,
    )
    if sampler.missing:
        print(
            f"note: no training track holds {', '.join(map(repr, sampler.missing))}: "
            "that condition is not trained",
            file=sys.stderr,
            flush=True,
        )
    mixtures_per_batch = t.batch_size // sampler.n_targets
    val_x, val_y = split_inputs_targets(validation_batches(cached_valid, sampler))

    # Resume: continue the batch stream where the backed-up epoch left it.
    first_epoch = resume_epoch(out_dir / "backup")
    if (out_dir / "backup").exists():
        print(f"resuming from epoch {first_epoch} in '{out_dir}'", flush=True)
    truncate_history(out_dir / "history.csv", first_epoch)

    keras.utils.set_random_seed(t.seed)
    first_index = first_epoch * t.steps_per_epoch
    ds: Any
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        strategy = select_strategy(devices)
        scope: Any = strategy.scope()
        strategy_name, n_replicas = type(strategy).__name__, int(strategy.num_replicas_in_sync)
        ds = train_dataset(sampler, mixtures_per_batch, first_index=first_index)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        ds = ds.with_options(options)
    else:
        if devices:
            raise DataError("--devices needs the TensorFlow backend (KERAS_BACKEND=tensorflow)")
        scope, strategy_name, n_replicas = contextlib.nullcontext(), "none", 1
        workers = max(1, (os.cpu_count() or 1) - 1)
        ds = PatchBatches(sampler, mixtures_per_batch, t.steps_per_epoch, first_index, workers)

    with scope:
        network = build_model(cfg)
        if parent is not None:
            copy_weights(parent[0], network, parent[1], cfg)
        elif cfg.model.input_scaling != "none":
            network.get_layer("input_scaling").set_statistics(*input_statistics(sampler))
        trainer = SeparationTrainer(network, cfg)
        trainer.compile(
            optimizer=keras.optimizers.Adam(
                learning_rate(t), use_ema=t.ema_momentum > 0, ema_momentum=t.ema_momentum or 0.99
            )
        )
        trainer({k: v[:1] for k, v in val_x.items()})  # built before fit, as BackupAndRestore needs

    provenance = make_provenance(
        cfg.to_dict(),
        data={**describe_data(data, splits), "n_valid_patches": int(val_y["weight"].shape[0])},
        metrics={},
        status="running",
        n_parameters=int(network.count_params()),
        backend=keras.backend.backend(),
        strategy=strategy_name,
        n_replicas=n_replicas,
    )
    if parent is not None:
        provenance["parent"] = parent_record(parent[3], parent[2])
    if prov_path.exists():
        old = json.loads(prov_path.read_text())
        provenance["metrics"] = old.get("metrics", {})
        provenance["metrics"]["history"] = [
            h for h in provenance["metrics"].get("history", []) if h["epoch"] <= first_epoch
        ]
    write_json_atomic(prov_path, provenance)

    limit = t.max_minutes if max_minutes is None else max_minutes
    # Averaged weights (if any) swapped in at each epoch end, before validation and checkpoints see them.
    ema = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if t.ema_momentum > 0 else []
    callbacks = run_callbacks(
        cfg, out_dir, provenance, limit, verbose, first=[*ema, ValidationSDR(cached_valid, cfg)]
    )
    trainer.fit(
        ds,
        epochs=t.epochs,
        steps_per_epoch=t.steps_per_epoch,
        validation_data=(val_x, val_y),
        validation_batch_size=mixtures_per_batch,
        callbacks=callbacks,
        verbose=verbose,
    )
    done = provenance["metrics"].get("epochs_done", 0)
    time_limited = any(isinstance(c, Checkpoints) and c.time_limited for c in callbacks)
    early_stopped = any(
        isinstance(c, keras.callbacks.EarlyStopping) and c.stopped_epoch > 0 for c in callbacks
    )
    if time_limited and not early_stopped and done < t.epochs:
        # Paused, not finished: the backup stays, and the same command continues the run.
        provenance["status"] = "paused"
        print(
            f"paused after epoch {done} of {t.epochs}: run the same command again to continue",
            flush=True,
        )
    else:
        provenance["status"] = "complete"
        shutil.rmtree(out_dir / "backup", ignore_errors=True)
    write_json_atomic(prov_path, provenance)
    return provenance


def _load_parent(
    init_from: str | os.PathLike, config: Config
) -> tuple[Any, Config, dict[str, Any], Path]:
    """(keras model, its Config, its provenance, its path) of the model to start from, checked against config."""
    try:
        path = resolve_model_path(None if str(init_from) == "default" else init_from)
        if path.is_dir():
            raise DataError(
                "{init_from} needs a .keras file or a training run directory, not an export: "
                f"'{literal(path)}'",
                names={"init_from": "init_from"},
            )
        model, parent_config, provenance = load_keras_model(path)
    except ModelError as exc:
        raise DataError(str(exc)) from None
    check_compatible(parent_config, config)
    return model, parent_config, provenance, path

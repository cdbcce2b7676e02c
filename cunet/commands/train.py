"""`cunet train`: train a model on MUSDB18, folder datasets and clip folders."""

from __future__ import annotations

import argparse
import dataclasses
import math

from ..config import load_config
from ..errors import DataError, UserError
from ..tflog import import_tensorflow, probe_devices, tensorflow_backend

DATA_HELP = (
    "a data source, repeatable: a MUSDB18 root, a folder dataset (train/<track>/<stem>.wav, "
    "valid/... optional) or a folder of one-stem clips; options after commas: stem=NAME (clip "
    "folder), rename=OLD:NEW, weight=W, valid=N (hold out N tracks), wav (MUSDB18 wav layout). "
    "E.g. --data ../musdb18 --data ../mir1k,stem=vocals,weight=0.3"
)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train",
        help="train a model on MUSDB18 or your own stems",
        description="Train a C-U-Net (train splits for fitting, valid splits for selection). "
        "Re-running the same command resumes an interrupted run.",
    )
    p.add_argument("--config", required=True, help="YAML config, e.g. configs/default.yaml")
    p.add_argument("--data", action="append", default=[], metavar="SPEC", help=DATA_HELP)
    p.add_argument(
        "--musdb-root",
        action="append",
        default=[],
        metavar="DIR",
        help="a MUSDB18 root (same as --data DIR)",
    )
    p.add_argument("--out", required=True, help="run directory (checkpoints, logs, provenance)")
    p.add_argument("--cache-dir", default=None, help="decoded STFT cache (default: ~/.cache/cunet)")
    p.add_argument("--is-wav", action="store_true", help="MUSDB18 roots are in the wav layout")
    p.add_argument(
        "--init-from",
        default=None,
        metavar="MODEL",
        help="start from a trained model: 'default' (the shipped one), a .keras file or a run directory; "
        "same instruments fine-tune, more instruments (listed after the parent's) add conditions",
    )
    p.add_argument("--learning-rate", type=float, default=None, help="override train.learning_rate")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="pause after the epoch that reaches this time (the same command continues the run)",
    )
    p.add_argument(
        "--devices",
        default=None,
        help="comma list of devices for MirroredStrategy, e.g. /gpu:0,/gpu:1 "
        "(default: all GPUs; TF_CONFIG selects MultiWorkerMirroredStrategy)",
    )
    p.add_argument(
        "--logical-cpus", type=int, default=0, help="split the CPU into N logical devices (testing)"
    )
    p.add_argument(
        "--track-limit", type=int, default=None, help="use only the first N tracks of each split"
    )
    p.add_argument(
        "--verbose",
        type=int,
        default=1,
        choices=(0, 1, 2),
        help="Keras progress: 0 none, 1 bar, 2 lines",
    )
    p.set_defaults(handler=run)
    return p


# --max-minutes: a year of training; more is no bound at all.
MAX_MINUTES = 525_600.0
# --logical-cpus: each logical device holds its own copy of the model's variables.
MAX_LOGICAL_CPUS = 64


def _check(args: argparse.Namespace) -> None:
    """The numeric options, before anything is read (UserError, one line)."""
    minutes = args.max_minutes
    if minutes is not None and not (math.isfinite(minutes) and 0 <= minutes <= MAX_MINUTES):
        raise UserError(
            f"--max-minutes must be a number of minutes in [0, {MAX_MINUTES:g}] "
            f"(0: no limit), got {minutes!r}"
        )
    if not 0 <= args.logical_cpus <= MAX_LOGICAL_CPUS:
        raise UserError(
            f"--logical-cpus must be in [0, {MAX_LOGICAL_CPUS}] (0 or 1: no split), "
            f"got {args.logical_cpus}"
        )
    if args.track_limit is not None and args.track_limit < 1:
        raise UserError(f"--track-limit must be >= 1, got {args.track_limit}")
    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {args.epochs}")


def run(args: argparse.Namespace) -> int:
    from ..data.sources import parse_data_spec

    _check(args)
    config = load_config(args.config)
    overrides = {
        k: v
        for k, v in (("learning_rate", args.learning_rate), ("epochs", args.epochs))
        if v is not None
    }
    if overrides:
        config = dataclasses.replace(
            config, train=dataclasses.replace(config.train, **overrides)
        ).validate()
    specs = [parse_data_spec(s, is_wav=args.is_wav) for s in [*args.musdb_root, *args.data]]
    if not specs:
        raise UserError("no training data: give --data PATH (or --musdb-root DIR)")
    if tensorflow_backend():
        import_tensorflow(muted=True)  # start-up lines muted; training's own progress is not
    elif args.logical_cpus > 1 or args.devices:
        raise UserError("--devices and --logical-cpus need the TensorFlow backend (KERAS_BACKEND)")
    from ..training.loop import split_cpu, train

    if args.logical_cpus > 1:
        split_cpu(args.logical_cpus)
    probe_devices()
    devices = [d for d in args.devices.split(",") if d] if args.devices else None
    try:
        train(
            config,
            specs,
            args.out,
            cache_dir=args.cache_dir,
            devices=devices,
            max_minutes=args.max_minutes,
            verbose=args.verbose,
            track_limit=args.track_limit,
            init_from=args.init_from,
        )
    except FileNotFoundError as exc:  # a file vanished between listing and decoding
        raise DataError(str(exc)) from None
    return 0

"""`cunet train`: train a model on MUSDB18."""
from __future__ import annotations

import argparse

from ..errors import DataError
from ..tflog import import_tensorflow, probe_devices


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a model on MUSDB18",
                       description="Train a C-U-Net on MUSDB18 (musdb train split; valid split for selection). "
                                   "Re-running the same command resumes an interrupted run.")
    p.add_argument("--config", required=True, help="YAML config, e.g. configs/default.yaml")
    p.add_argument("--musdb-root", required=True, help="MUSDB18 root folder (holds train/)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, logs, provenance)")
    p.add_argument("--cache-dir", default=None, help="decoded audio/STFT cache (default: ~/.cache/cunet)")
    p.add_argument("--is-wav", action="store_true", help="MUSDB18 in the wav layout instead of .stem.mp4")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after the epoch that reaches this time")
    p.add_argument("--devices", default=None,
                   help="comma list of devices for MirroredStrategy, e.g. /gpu:0,/gpu:1 "
                        "(default: all GPUs; TF_CONFIG selects MultiWorkerMirroredStrategy)")
    p.add_argument("--logical-cpus", type=int, default=0, help="split the CPU into N logical devices (testing)")
    p.add_argument("--track-limit", type=int, default=None, help="use only the first N tracks of each split")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2), help="Keras progress: 0 none, 1 bar, 2 lines")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..config import load_config

    config = load_config(args.config)
    import_tensorflow(muted=True)  # start-up lines muted; training's own progress is not
    from ..train import split_cpu, train

    if args.logical_cpus > 1:
        split_cpu(args.logical_cpus)
    probe_devices()
    devices = [d for d in args.devices.split(",") if d] if args.devices else None
    try:
        train(config, args.musdb_root, args.out, cache_dir=args.cache_dir, is_wav=args.is_wav, devices=devices,
              max_minutes=args.max_minutes, verbose=args.verbose, track_limit=args.track_limit)
    except FileNotFoundError as exc:  # data.open_musdb's missing root (until it raises DataError itself)
        raise DataError(str(exc)) from None
    return 0

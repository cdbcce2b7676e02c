#!/usr/bin/env python
"""The C-U-Net paper's conditioning study: train every variant on the same data and steps, score, tabulate.

Variants (Meseguer-Brocal & Peeters, ISMIR 2019): one dedicated U-Net per instrument (configs/standard.yaml
with model.target set) and the four C-U-Nets (configs/{simple,complex}_{dense,cnn}.yaml). Each run keeps
its config's audio, model, loss and optimiser, and gets the same data, training length, batch and seed
(defaults: 4 epochs of 300 steps of 16 patches, seed 42; docs/paper.md says why):

    python scripts/paper_study.py train      # RUNS/<variant>, RUNS = ~/.cache/cunet-runs/paper; 8 x 10 min here
    python scripts/paper_study.py evaluate   # OUT/<variant>/<protocol>, OUT = ~/.cache/cunet-eval/paper
    python scripts/paper_study.py table      # the markdown tables of docs/paper.md
    python scripts/paper_study.py masks      # how loud each model's estimates are against the true stems

`train` writes each run's effective config to RUNS/<variant>/study.yaml and calls `cunet train` with it
(re-running resumes a paused run and skips a complete one). `evaluate` scores every run with the paper's
protocol and with the project's (museval v4) on MUSDB18's valid split. --variants limits any step to
some variants; --runs and --out move the folders.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import yaml

from cunet.cli import main as cunet_main
from cunet.config import Config, load_config
from cunet.evaluate.reports import read_aggregate, read_track_scores

ROOT = Path(__file__).resolve().parents[1]
INSTRUMENTS = ("vocals", "drums", "bass", "other")
CONDITIONED = ("simple_dense", "complex_dense", "simple_cnn", "complex_cnn")
# variant -> (config file, target of a dedicated U-Net or None for a C-U-Net)
VARIANTS: dict[str, tuple[str, str | None]] = {
    **{v: (f"{v}.yaml", None) for v in CONDITIONED},
    **{f"standard_{i}": ("standard.yaml", i) for i in INSTRUMENTS},
}
PROTOCOLS = ("paper", "musdb")
DEFAULT_DATA = (
    "../shared/data/musdb18-7",
    "../shared/data/medleydb-musicdelta,weight=0.5,valid=0",
    "~/.cache/cunet-data/eif-train,weight=0.4,valid=0",
)
MUSDB_ROOT = "../shared/data/musdb18-7"


def study_config(
    variant: str, steps_per_epoch: int, epochs: int, seed: int, batch_size: int | None = None
) -> Config:
    """The variant's config with the study's training length, seed and batch size (None: the config's).

    Early stopping and the plateau schedule are pushed past the last epoch so that every run takes
    exactly `epochs` x `steps_per_epoch` steps at the config's own learning rate.
    """
    file, target = VARIANTS[variant]
    config = load_config(ROOT / "configs" / file)
    model = config.model if target is None else dataclasses.replace(config.model, target=target)
    train = dataclasses.replace(
        config.train,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        seed=seed,
        batch_size=batch_size or config.train.batch_size,
        early_stopping_patience=epochs + 1,
        reduce_lr_patience=epochs + 1,
    )
    return dataclasses.replace(config, name=f"paper_{variant}", model=model, train=train).validate()


def run_train(args: argparse.Namespace) -> int:
    failed = []
    for variant in args.variants:
        out = args.runs / variant
        out.mkdir(parents=True, exist_ok=True)
        config = study_config(
            variant, args.steps_per_epoch, args.epochs, args.seed, args.batch_size
        )
        (out / "study.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        data = [a for spec in args.data for a in ("--data", spec)]
        command = [sys.executable, "-m", "cunet", "train", "--config", str(out / "study.yaml")]
        command += [*data, "--out", str(out), "--verbose", "2"]
        print(f"== {variant}: {' '.join(command[1:])}", flush=True)
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            failed.append(variant)
    if failed:
        print(f"error: training failed for {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def run_evaluate(args: argparse.Namespace) -> int:
    failed = []
    for variant in args.variants:
        target = VARIANTS[variant][1]
        for protocol in PROTOCOLS:
            out = args.out / variant / protocol
            if (out / "aggregate.csv").exists():
                continue
            command = ["evaluate", "--musdb-root", args.musdb_root, "--subsets", "train"]
            command += ["--split", "valid", "--model", str(args.runs / variant)]
            command += ["--protocol", protocol, "--name", variant, "--out", str(out)]
            command += ["--jobs", str(args.jobs), "--no-progress"]
            command += ["--is-wav"] if args.is_wav else []
            command += ["--instruments", target] if target is not None else []
            print(f"== {variant} ({protocol}): cunet {' '.join(command)}", flush=True)
            if cunet_main(command) != 0:  # in this process: one TensorFlow start for all
                failed.append(f"{variant} ({protocol})")
    if failed:
        print(f"error: evaluation failed for {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def run_record(run: Path) -> dict:
    """Parameters and training minutes from a run's provenance."""
    prov = json.loads((run / "provenance.json").read_text())
    metrics = prov.get("metrics", {})
    return {
        "params": int(prov["n_parameters"]),
        "minutes": float(metrics.get("train_minutes", 0.0)),
        "status": prov.get("status", "?"),
        "best_epoch": metrics.get("best_epoch"),
    }


def models(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(row name, variants) in table order: the dedicated U-Nets together (the paper's baseline), then
    each C-U-Net."""
    dedicated = [v for v in args.variants if VARIANTS[v][1] is not None]
    rows = [(f"U-Net, one per instrument ({len(dedicated)})", dedicated)] if dedicated else []
    return rows + [
        (f"C-U-Net {v.replace('_', ' ')}", [v]) for v in args.variants if VARIANTS[v][1] is None
    ]


def table_rows(args: argparse.Namespace, protocol: str, metrics: tuple[str, ...]) -> list[str]:
    """Markdown rows in the paper's layout: one row per model, `metrics` per instrument (medians over
    tracks); parameters and training minutes of the dedicated U-Nets are their sums."""
    head = " | ".join(f"{i} {m}" for i in INSTRUMENTS for m in metrics)
    lines = [f"| model | params | minutes | {head} |"]
    lines.append("|---|---:|---:|" + "---:|" * len(metrics) * len(INSTRUMENTS))
    for name, variants in models(args):
        scores: dict[str, dict[str, float]] = {}
        params, minutes = 0, 0.0
        for v in variants:
            scores.update(read_aggregate(args.out / v / protocol, v))
            record = run_record(args.runs / v)
            params, minutes = params + record["params"], minutes + record["minutes"]
        cells = [
            f"{scores[i][m]:.2f}" if i in scores else "—" for i in INSTRUMENTS for m in metrics
        ]
        lines.append(f"| {name} | {params / 1e6:.2f} M | {minutes:.0f} | {' | '.join(cells)} |")
    return lines


def paired_rows(args: argparse.Namespace, protocol: str) -> list[str]:
    """Per C-U-Net and instrument: mean over tracks of its SDR minus the dedicated U-Net's, and on how
    many tracks it is ahead (paired, so less noisy than a difference of medians)."""
    dedicated: dict[tuple[str, str], float] = {}
    for v in (v for v in args.variants if VARIANTS[v][1] is not None):
        dedicated.update(read_track_scores(args.out / v / protocol, v))
    if not dedicated:
        return []
    lines = ["| C-U-Net minus U-Nets | " + " | ".join(INSTRUMENTS) + " |"]
    lines.append("|---|" + "---:|" * len(INSTRUMENTS))
    for v in (v for v in args.variants if VARIANTS[v][1] is None):
        own = read_track_scores(args.out / v / protocol, v)
        cells = []
        for inst in INSTRUMENTS:
            diffs = [own[k] - dedicated[k] for k in own if k[1] == inst and k in dedicated]
            diffs = [d for d in diffs if math.isfinite(d)]
            cells.append(
                f"{sum(diffs) / len(diffs):+.2f} ({sum(d > 0 for d in diffs)}/{len(diffs)})"
                if diffs
                else "—"
            )
        lines.append(f"| {v.replace('_', ' ')} | {' | '.join(cells)} |")
    return lines


def run_masks(args: argparse.Namespace) -> int:
    """How much of each target's energy the masks pass on the valid tracks: a model stuck in the
    all-silent regime passes almost nothing, whatever BSSEval makes of the scaled-down residue."""
    import numpy as np  # here: the train step runs in subprocesses and needs no TensorFlow here

    from cunet.data import build_cache, open_sources, parse_data_spec
    from cunet.engines.loading import load_keras_model
    from cunet.nn.models import mask_model
    from cunet.training.validation import separate_track_masks

    print("| variant | " + " | ".join(INSTRUMENTS) + " |")
    print("|---|" + "---:|" * len(INSTRUMENTS))
    spec = parse_data_spec(args.musdb_root, is_wav=args.is_wav)
    caches: dict[tuple, list] = {}  # every variant shares the paper's audio and seed: read once
    for variant in args.variants:
        network, config, _ = load_keras_model(args.runs / variant / "best.keras")
        key = (config.audio, config.train.seed)
        if key not in caches:
            tracks = open_sources([spec], config.train.seed)["valid"]
            caches[key] = build_cache(tracks, args.cache_dir, config.audio, progress=False)
        cached = caches[key]
        a, masker = config.audio, mask_model(network)
        passed = {n: 0.0 for n in config.model.outputs}
        present = {n: 0.0 for n in config.model.outputs}
        for track in cached:
            mixture = track.mixture(a.n_bins, a.n_channels)
            masks = separate_track_masks(masker, mixture, config)
            for i, name in enumerate(config.model.outputs):
                if name not in track.stems:
                    continue
                target = np.asarray(track.load(name))[:, :, : a.n_bins]
                passed[name] += float((np.abs(masks[i] * mixture) ** 2).sum())
                present[name] += float((np.abs(target) ** 2).sum())
        # estimate energy / target energy, in dB: 0 when the estimate is as loud as the target
        cells = [
            f"{10 * math.log10(max(passed[i], 1e-20) / present[i]):+.1f}" if present.get(i) else "—"
            for i in INSTRUMENTS
        ]
        print(f"| {variant} | {' | '.join(cells)} |", flush=True)
    return 0


def run_table(args: argparse.Namespace) -> int:
    for protocol in PROTOCOLS:
        # museval v4's SDR of a source depends on its own reference only; its SIR and SAR depend on the
        # other references, which differ between a four-stem C-U-Net and a one-stem U-Net: SDR only.
        metrics = ("SDR", "SIR", "SAR") if protocol == "paper" else ("SDR",)
        print(f"### {protocol} protocol\n")
        print("\n".join(table_rows(args, protocol, metrics)) + "\n")
        paired = paired_rows(args, protocol)
        if paired:
            print("\n".join(paired) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("train", "evaluate", "table", "masks"))
    parser.add_argument("--runs", type=Path, default=Path("~/.cache/cunet-runs/paper").expanduser())
    parser.add_argument("--out", type=Path, default=Path("~/.cache/cunet-eval/paper").expanduser())
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--data", action="append", help="cunet train --data SPEC (repeatable)")
    parser.add_argument(
        "--musdb-root", default=MUSDB_ROOT, help="MUSDB18 root scored (valid split)"
    )
    parser.add_argument(
        "--is-wav", action="store_true", help="the MUSDB18 root is in the wav layout"
    )
    parser.add_argument("--steps-per-epoch", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="patches per step (the configs say 64, as the paper)",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=Path("~/.cache/cunet").expanduser(), help="STFT cache"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--jobs", type=int, default=2, help="cunet evaluate --jobs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.runs, args.out = args.runs.expanduser(), args.out.expanduser()
    args.data = [os.path.expanduser(spec) for spec in (args.data or DEFAULT_DATA)]
    steps = {"train": run_train, "evaluate": run_evaluate, "table": run_table, "masks": run_masks}
    return steps[args.step](args)


if __name__ == "__main__":
    sys.exit(main())

"""`cunet evaluate`: score a model and baselines on MUSDB18 with museval, reported the SiSEC way."""
from __future__ import annotations

import argparse
import sys

from ..config import INSTRUMENTS
from ..errors import DataError, UserError
from ..tflog import native_stderr_muted, probe_devices, quiet_tensorflow

# Mirrors cunet.evaluate.BASELINES / PROTOCOLS (kept here so `--help` imports no numpy).
BASELINE_CHOICES = ("mixture", "IRM1", "IRM2", "IBM")
PROTOCOL_CHOICES = ("musdb", "paper")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "evaluate", help="score a model and baselines on MUSDB18 (museval, SiSEC style)",
        description="Separate every track of a MUSDB18 subset and score it with museval. Writes per-track JSON "
                    "in museval's format (OUT/<method>/<subset>/<track>.json), the aggregate (median over "
                    "frames, then over tracks) as aggregate.md and aggregate.csv, per-track scores, and an SDR "
                    "boxplot. Exit code 1 when some track or method failed (the others are still scored).")
    p.add_argument("--musdb-root", required=True, metavar="DIR", help="MUSDB18 root folder (holds test/ and train/)")
    p.add_argument("--subsets", default="test", choices=("test", "train"), help="subset to score (default: test)")
    p.add_argument("--split", default=None, choices=("train", "valid"),
                   help="musdb's train/valid split of the train subset (default: the whole subset)")
    p.add_argument("--is-wav", action="store_true", help="MUSDB18 in the wav layout instead of .stem.mp4")
    p.add_argument("--model", default=None, metavar="PATH",
                   help=".keras file, training run directory or SavedModel export (default: the shipped model)")
    p.add_argument("--no-model", action="store_true", help="score only the baselines")
    p.add_argument("--name", default="cunet", help="method name for the model's scores (default: cunet)")
    p.add_argument("--baselines", nargs="*", default=None, choices=BASELINE_CHOICES, metavar="NAME",
                   help="also score baselines on the same tracks: mixture, IRM1, IRM2, IBM "
                        "(the flag alone: all four)")
    p.add_argument("--instruments", nargs="+", default=None, choices=INSTRUMENTS, metavar="NAME",
                   help=f"instruments to score (default: all the model separates; {', '.join(INSTRUMENTS)})")
    p.add_argument("--protocol", default="musdb", choices=PROTOCOL_CHOICES,
                   help="musdb: BSSEval v4, 1 s windows, native rate (SiSEC 2018; default); "
                        "paper: 8192 Hz mono, whole-track BSSEval as the original C-U-Net code")
    p.add_argument("--out", default="evaluation", metavar="DIR", help="results folder (default: ./evaluation)")
    p.add_argument("--track-limit", type=int, default=None, metavar="N", help="score only the first N tracks")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="tracks scored in parallel processes (default 1)")
    p.add_argument("--oracle-stft", type=int, nargs=2, default=None, metavar=("N_FFT", "HOP"),
                   help="STFT of the oracle masks in samples (default: 4096 1024; paper protocol: 1024 256)")
    p.add_argument("--postprocess", default=None, choices=("none", "ratio", "wiener"),
                   help="how the model's instrument masks are combined (default: the model's own; see separate)")
    p.add_argument("--ratio-power", type=float, default=1.0, help="exponent of the ratio normalisation (default: 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)
    return p


def _check_args(args: argparse.Namespace) -> None:
    if args.no_model and args.baselines is None:
        raise UserError("nothing to evaluate: --no-model needs --baselines")
    if args.no_model and args.model is not None:
        raise UserError("--model and --no-model exclude each other")
    if args.split is not None and args.subsets != "train":
        raise UserError("--split only applies to --subsets train")
    if args.jobs < 1:
        raise UserError("--jobs must be >= 1")
    if args.track_limit is not None and args.track_limit < 1:
        raise UserError("--track-limit must be >= 1")
    if args.oracle_stft is not None and not 0 < args.oracle_stft[1] <= args.oracle_stft[0]:
        raise UserError("--oracle-stft needs N_FFT > 0 and 0 < HOP <= N_FFT")
    if not args.no_model and (not args.name or "/" in args.name or args.name in BASELINE_CHOICES):
        raise UserError(f"--name '{args.name}' must be a plain name different from the baselines")


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    quiet_tensorflow()
    import functools
    from pathlib import Path

    from tqdm import tqdm

    from ..evaluate import (EvaluationSettings, available_cpus, evaluate_tracks, model_separate_fn,
                            open_musdb_tracks, write_reports)

    baselines = tuple(dict.fromkeys(args.baselines or BASELINE_CHOICES)) if args.baselines is not None else ()
    tracks = open_musdb_tracks(args.musdb_root, args.subsets, args.split, args.is_wav, args.track_limit)
    if not tracks:
        layout = "wav folders" if args.is_wav else ".stem.mp4 files"
        raise DataError(f"no MUSDB18 tracks ({layout}) in '{Path(args.musdb_root) / args.subsets}'"
                        + ("" if args.is_wav else " (use --is-wav for the wav layout)"))

    instruments = tuple(dict.fromkeys(args.instruments)) if args.instruments else None
    factory = None
    extra = {"musdb_root": str(args.musdb_root), "subsets": args.subsets, "split": args.split,
             "jobs": args.jobs, "model": None}
    if not args.no_model:
        from ..modelio import resolve_model_path
        from ..separator import Separator

        # Loaded here once even with --jobs > 1: bad paths and instruments fail fast, before any worker starts.
        extra["model"] = str(resolve_model_path(args.model))
        from ..postprocess import Postprocess

        postprocess = Postprocess(args.postprocess, args.ratio_power).validate() if args.postprocess else None
        extra["postprocess"] = args.postprocess
        with native_stderr_muted():
            separator = Separator.from_pretrained(args.model, postprocess=postprocess)
        extra["postprocess"] = separator.postprocess.mode
        probe_devices()
        instruments = tuple(separator.check_instruments(instruments))
        if args.jobs == 1:
            # The separator loaded above, used in this process.
            factory = functools.partial(_loaded_separate_fn, separator, instruments)
        else:
            del separator
            threads = max(1, available_cpus() // min(args.jobs, len(tracks)))
            factory = functools.partial(model_separate_fn, args.model, instruments, threads, postprocess)
    settings = EvaluationSettings(out_dir=Path(args.out), protocol=args.protocol,
                                  instruments=instruments or INSTRUMENTS, baselines=baselines,
                                  model_name=args.name,
                                  oracle_stft=tuple(args.oracle_stft) if args.oracle_stft else None)

    def log(message: str) -> None:
        tqdm.write(f"warning: {message}", file=sys.stderr)

    evaluation = evaluate_tracks(tracks, settings, factory, jobs=args.jobs, progress=not args.no_progress, log=log)
    written = write_reports(evaluation, extra)
    failed_tracks = sorted({f.track for f in evaluation.failures})
    if evaluation.scores.empty:
        print(f"error: no track could be scored ({len(evaluation.failures)} failures, see "
              f"{written.get('failures', settings.out_dir)})", file=sys.stderr)
        return 1
    print(Path(written["aggregate_md"]).read_text(encoding="utf-8").split("\n## SIR")[0].rstrip())
    print(f"\nresults: {settings.out_dir} (aggregate.md, aggregate.csv, track_scores.csv, boxplot_sdr.png, "
          f"<method>/{args.subsets}/*.json)")
    if evaluation.failures:
        print(f"warning: {len(evaluation.failures)} failure(s) on {len(failed_tracks)} track(s), see "
              f"{written['failures']}", file=sys.stderr)
        return 1
    return 0


def _loaded_separate_fn(separator, instruments):
    """A separate_fn over an already loaded Separator (for --jobs 1)."""
    return lambda mixture, rate: separator.separate(mixture, rate, instruments=instruments)

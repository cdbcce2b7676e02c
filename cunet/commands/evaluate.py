"""`cunet evaluate`: score a model and baselines on MUSDB18 or any training data source with museval,
reported the SiSEC way."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

from ..config import MAX_FRAME_OVERLAP, MAX_N_FFT, config_from_dict
from ..errors import CunetError, DataError, UserError
from ..tflog import native_stderr_muted, probe_devices, quiet_tensorflow
from ..workers import bounded_workers
from . import add_postprocess_options

# Mirror cunet.evaluate.BASELINES / PROTOCOLS / datasets.EVAL_SPLITS (kept here so `--help` imports no numpy).
BASELINE_CHOICES = ("mixture", "IRM1", "IRM2", "IBM")
PROTOCOL_CHOICES = ("musdb", "paper")
EVAL_SPLIT_CHOICES = ("train", "valid", "all")


DATA_HELP = (
    "a data source as `cunet train --data` takes it, repeatable: a MUSDB18 root (its train subset) or a "
    "folder dataset (train/<track>/<stem>.wav, valid/... optional, mixture.wav optional), with options "
    "after commas: rename=OLD:NEW, valid=N (hold out N tracks, seeded), wav. "
    "E.g. --data ../medleydb-musicdelta,rename=other:guitar,valid=3"
)
MAP_HELP = (
    "score another model output as the estimate of a reference stem: REFERENCE=OUTPUT, repeatable or "
    "comma-separated. `--model default --map guitar=other` scores the shipped model's `other` output "
    "as a guitar separator; also an alias when the model's names differ from the data's "
    "(--map vocals=voice). Baselines ignore it"
)


DESCRIPTION = """\
Separate every track of a MUSDB18 subset, or of any data source that `cunet train` accepts (--data),
and score it with museval. Writes per-track JSON in museval's format
(OUT/<method>/<subset or split>/<track>.json), the aggregate (median over frames, then over tracks)
as aggregate.md and aggregate.csv, per-track scores, and an SDR boxplot.

Scored names are reference stems of the data. A track is scored for the stems it holds; the mixture
is the track's own mixture file when it has one, else the sum of its stems (settings.json says
which). Exit code 1 when some track or method failed (the others are still scored)."""
EXAMPLES = """\
examples:
  cunet evaluate --musdb-root ../musdb18 --subsets test --model runs/default --baselines --jobs 2
  # the 3 songs a fine-tuning run held out (same spec and seed as for cunet train):
  cunet evaluate --data ../medleydb-musicdelta,rename=other:guitar,valid=3 --model runs/guitar \\
      --instruments guitar --baselines mixture IRM1
  # the shipped model's `other` output as a guitar separator, on the same songs:
  cunet evaluate --data ../medleydb-musicdelta,rename=other:guitar,valid=3 --model default \\
      --map guitar=other --instruments guitar --name cunet-other"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "evaluate",
        help="score a model and baselines on MUSDB18 or your own stems (museval, SiSEC style)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=DESCRIPTION,
        epilog=EXAMPLES,
    )
    p.add_argument(
        "--musdb-root",
        default=None,
        metavar="DIR",
        help="MUSDB18 root folder (holds test/ and train/)",
    )
    p.add_argument(
        "--data",
        action="append",
        default=None,
        metavar="SPEC",
        help=DATA_HELP + " (instead of --musdb-root)",
    )
    p.add_argument(
        "--subsets",
        default=None,
        choices=("test", "train"),
        help="with --musdb-root: the subset to score (default: test)",
    )
    p.add_argument(
        "--split",
        default=None,
        choices=EVAL_SPLIT_CHOICES,
        help="with --data: the split to score as training defines it (default: valid; all: both); "
        "with --musdb-root: musdb's train/valid split of the train subset (default: the whole subset)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="with --data: seed of the hold-out (valid=N, or a tenth of a folder dataset without "
        "valid/); the same as training's train.seed gives the same tracks (default: 42)",
    )
    p.add_argument(
        "--is-wav", action="store_true", help="MUSDB18 in the wav layout instead of .stem.mp4"
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="PATH",
        help=".keras file, training run directory, SavedModel export, or 'default': the shipped "
        "model (also when not given)",
    )
    p.add_argument("--no-model", action="store_true", help="score only the baselines")
    p.add_argument(
        "--name", default="cunet", help="method name for the model's scores (default: cunet)"
    )
    p.add_argument(
        "--baselines",
        nargs="*",
        default=None,
        choices=BASELINE_CHOICES,
        metavar="NAME",
        help="also score baselines on the same tracks: mixture, IRM1, IRM2, IBM "
        "(the flag alone: all four)",
    )
    p.add_argument(
        "--instruments",
        nargs="+",
        default=None,
        metavar="NAME",
        help="reference stems to score (default: those the data holds that a model output estimates, "
        "by name or --map; with --no-model: every stem in the data)",
    )
    p.add_argument(
        "--map", action="append", default=None, metavar="REFERENCE=OUTPUT", help=MAP_HELP
    )
    p.add_argument(
        "--protocol",
        default="musdb",
        choices=PROTOCOL_CHOICES,
        help="musdb: BSSEval v4, 1 s windows, native rate (SiSEC 2018; default); "
        "paper: 8192 Hz mono, whole-track BSSEval as the original C-U-Net code",
    )
    p.add_argument(
        "--out", default="evaluation", metavar="DIR", help="results folder (default: ./evaluation)"
    )
    p.add_argument(
        "--track-limit", type=int, default=None, metavar="N", help="score only the first N tracks"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="tracks scored in parallel processes (default 1)",
    )
    p.add_argument(
        "--oracle-stft",
        type=int,
        nargs=2,
        default=None,
        metavar=("N_FFT", "HOP"),
        help="STFT of the oracle masks in samples (default: 4096 1024; paper protocol: 1024 256)",
    )
    add_postprocess_options(
        p, "how the model's instrument masks are combined (default: the model's own; see separate)"
    )
    p.add_argument(
        "--shifts",
        type=int,
        default=1,
        help="network passes per chunk, their masks averaged (see separate; default: 1)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)
    return p


def _check_args(args: argparse.Namespace) -> None:
    if (args.musdb_root is None) == (args.data is None):
        raise UserError(
            "--musdb-root and --data exclude each other"
            if args.data
            else "no data: give --musdb-root DIR (MUSDB18) or --data SPEC (any training data source)"
        )
    if args.data is not None:
        if args.subsets is not None:
            raise UserError(
                "--subsets applies to --musdb-root; with --data choose the split with --split"
            )
    else:
        if args.seed is not None:
            raise UserError("--seed applies to --data (musdb's split is fixed)")
        if args.split in ("train", "valid") and (args.subsets or "test") != "train":
            raise UserError("--split only applies to --subsets train")
    if args.no_model and args.baselines is None:
        raise UserError("nothing to evaluate: --no-model needs --baselines")
    if args.no_model and args.model is not None:
        raise UserError("--model and --no-model exclude each other")
    if args.no_model and args.map:
        raise UserError("--map needs a model (it picks model outputs; drop --no-model)")
    if args.jobs < 1:
        raise UserError("--jobs must be >= 1")
    if args.track_limit is not None and args.track_limit < 1:
        raise UserError("--track-limit must be >= 1")
    if args.oracle_stft is not None:
        n_fft, hop = args.oracle_stft
        # bounded as a model's STFT is: a tiny hop or a huge window would ask for gigabytes
        if not (
            16 <= n_fft <= MAX_N_FFT and n_fft // MAX_FRAME_OVERLAP <= hop <= n_fft and hop > 0
        ):
            raise UserError(
                f"--oracle-stft needs N_FFT in [16, {MAX_N_FFT}] and HOP in "
                f"[N_FFT/{MAX_FRAME_OVERLAP}, N_FFT] (samples), got {n_fft} {hop}"
            )
    from ..chunk_separator import check_shifts
    from ..postprocess import requested_postprocess

    check_shifts(args.shifts)  # checked here even with --no-model, which has no use for them
    requested_postprocess(args.postprocess, args.ratio_power)
    if not args.no_model and (not args.name or "/" in args.name or args.name in BASELINE_CHOICES):
        raise UserError(f"--name '{args.name}' must be a plain name different from the baselines")


def _open_tracks(args: argparse.Namespace) -> tuple[list, dict[str, Any]]:
    """The tracks to score and the settings.json record of where they come from."""
    from ..evaluate import open_data_tracks, open_musdb_tracks

    if args.data is not None:
        from ..data.sources import parse_data_spec

        specs = [parse_data_spec(text, is_wav=args.is_wav) for text in args.data]
        split, seed = args.split or "valid", 42 if args.seed is None else args.seed
        data_tracks = open_data_tracks(specs, split, seed, args.track_limit)
        return data_tracks, {"data": list(args.data), "split": split, "seed": seed}
    subsets = args.subsets or "test"
    split = None if args.split == "all" else args.split
    tracks = open_musdb_tracks(args.musdb_root, subsets, split, args.is_wav, args.track_limit)
    if not tracks:
        layout = "wav folders" if args.is_wav else ".stem.mp4 files"
        raise DataError(
            f"no MUSDB18 tracks ({layout}) in '{Path(args.musdb_root) / subsets}'"
            + ("" if args.is_wav else " (use --is-wav for the wav layout)")
        )
    return tracks, {"musdb_root": str(args.musdb_root), "subsets": subsets, "split": split}


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    from ..evaluate.targets import parse_map

    mapping = parse_map(args.map or [])
    quiet_tensorflow()
    from tqdm import tqdm

    from ..evaluate import (
        EvaluationSettings,
        available_cpus,
        describe_tracks,
        evaluate_tracks,
        model_separate_fn,
        resolve_targets,
        stem_union,
        write_reports,
    )

    baselines = (
        tuple(dict.fromkeys(args.baselines or BASELINE_CHOICES))
        if args.baselines is not None
        else ()
    )
    tracks, extra = _open_tracks(args)
    jobs, capped = bounded_workers(args.jobs, len(tracks), "--jobs", "track")
    if capped:
        print(capped, file=sys.stderr)
    data_stems = stem_union(tracks)
    extra.update(jobs=jobs, model=None)
    separator, postprocess = None, None
    model = None if args.model == "default" else args.model  # as `cunet train --init-from default`
    if not args.no_model:
        from ..engines.loading import resolve_model_path
        from ..postprocess import requested_postprocess
        from ..separator import Separator

        extra["model"] = str(resolve_model_path(model))
        recorded = _recorded_outputs(model)
        if recorded is not None:  # bad names fail here, before TensorFlow loads
            resolve_targets(args.instruments, data_stems, recorded, mapping)
        # Loaded here once even with --jobs > 1: a bad model fails fast, before any worker starts.
        postprocess = requested_postprocess(args.postprocess, args.ratio_power)
        with native_stderr_muted():
            separator = Separator.from_pretrained(
                model, postprocess=postprocess, shifts=args.shifts
            )
        extra["postprocess"] = separator.postprocess.mode
        if separator.postprocess.mode == "ratio":
            extra["ratio_power"] = separator.postprocess.power
        extra["shifts"] = args.shifts
        probe_devices()
    outputs = separator.instruments if separator is not None else None
    targets, estimate_from = resolve_targets(args.instruments, data_stems, outputs, mapping)
    extra.update(describe_tracks(tracks), map=mapping)
    settings = EvaluationSettings(
        out_dir=Path(args.out),
        protocol=args.protocol,
        instruments=targets,
        baselines=baselines,
        model_name=args.name,
        oracle_stft=tuple(args.oracle_stft) if args.oracle_stft else None,
        estimate_from=tuple((t, o) for t, o in estimate_from.items() if t != o),
    )
    factory = None
    if separator is not None:
        if jobs == 1:  # the separator loaded above, used in this process
            factory = functools.partial(_loaded_separate_fn, separator, settings.model_outputs)
        else:
            threads = max(1, available_cpus() // jobs)
            factory = functools.partial(
                model_separate_fn, model, settings.model_outputs, threads, postprocess, args.shifts
            )
            separator = None

    def log(message: str) -> None:
        tqdm.write(f"warning: {message}", file=sys.stderr)

    evaluation = evaluate_tracks(
        tracks, settings, factory, jobs=jobs, progress=not args.no_progress, log=log
    )
    written = write_reports(evaluation, extra)
    if evaluation.skipped:
        track, reason = evaluation.skipped[0]
        print(
            f"note: {len(evaluation.skipped)} track(s) not scored, e.g. '{track}': {reason}",
            file=sys.stderr,
        )
    failed_tracks = sorted({f.track for f in evaluation.failures})
    if evaluation.scores.empty:
        print(
            f"error: no track could be scored ({len(evaluation.failures)} failures, {len(evaluation.skipped)} "
            f"not scored; see {written.get('failures', written['settings'])})",
            file=sys.stderr,
        )
        return 1
    print(Path(written["aggregate_md"]).read_text(encoding="utf-8").split("\n## SIR")[0].rstrip())
    folders = ",".join(dict.fromkeys(t.subset for t in tracks))
    print(
        f"\nresults: {settings.out_dir} (aggregate.md, aggregate.csv, track_scores.csv, boxplot_sdr.png, "
        f"<method>/{folders}/*.json)"
    )
    if evaluation.failures:
        print(
            f"warning: {len(evaluation.failures)} failure(s) on {len(failed_tracks)} track(s), see "
            f"{written['failures']}",
            file=sys.stderr,
        )
        return 1
    return 0


def _recorded_outputs(model: str | None) -> tuple[str, ...] | None:
    """The model's outputs as its provenance record says, read without TensorFlow; None when the record
    cannot be read that way (loading the model then reports why, or finds the outputs)."""
    from ..engines.loading import read_export_provenance, read_keras_provenance, resolve_model_path

    try:
        path = resolve_model_path(model)
        record = read_export_provenance(path) if path.is_dir() else read_keras_provenance(path)
        return tuple(config_from_dict(record["config"]).model.outputs)
    except (CunetError, KeyError, TypeError):
        return None


def _loaded_separate_fn(separator: Any, instruments: tuple[str, ...]) -> Any:
    """A separate_fn over an already loaded Separator (for --jobs 1): {output: estimate}."""
    return lambda mixture, rate: separator.separate(mixture, rate, instruments=instruments)

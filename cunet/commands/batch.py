"""`cunet batch`: separate a catalog on Ray, in this process or on a cluster, resuming where it stopped.

It takes `cunet separate`'s options from `separate.add_parser` itself (so both stay one set), less
those of a live stream, plus its own: manifests, the Ray address, workers, retries and reports.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, cast

from ..errors import UserError, one_line
from ..io.naming import FilenameTemplate
from . import OPTIONS, message
from . import separate as separate_command

HELP = "separate a catalog on Ray (a local instance or a cluster), resumable"
DESCRIPTION = (
    "Separate many songs on Ray: a pool of workers, each with the model loaded once, fed as a bounded "
    "stream. Without --ray an embedded local Ray instance runs in this process; --ray auto or "
    "ray://HOST:PORT joins a running cluster. Songs whose outputs all exist are skipped, so a "
    "stopped job started again does only what is left."
)
EPILOG = (
    "Outputs are named as by `cunet separate` (see --filename) and are identical to its outputs. "
    "Inputs: audio files, folders (-r: subfolders too), URIs of any file system fsspec reaches "
    "(s3://bucket/prefix/ with s3fs) and --manifest files (paths one a line, or a CSV with a 'path' "
    "column; relative to the manifest). A worker that dies is restarted and its song tried again on "
    "another (--retries). Every song gets a line in the JSONL report (--report); failed ones also in "
    "the failures CSV (--failures), which --manifest takes to retry them. Exit code 0 when every song "
    "is done, 1 when some failed, 2 for bad options or a model that does not load."
)
# separate's options that a batch refuses: a live stream is one input, not a catalog
REFUSED = {
    "stream": "--stream",
    "latency": "--latency",
    "raw_format": "--raw-format",
    "raw_rate": "--raw-rate",
    "raw_channels": "--raw-channels",
}
# separate's options that a batch takes as they are (tests check that none is forgotten)
SHARED = (
    "help",
    "inputs",
    "instrument",
    "outdir",
    "recursive",
    "filename",
    "format",
    "bits",
    "float32",
    "clip",
    "mp3_bitrate",
    "start",
    "duration",
    "residual",
    "force",
    "model",
    "chunk_seconds",
    "shifts",
    "overlap_seconds",
    "postprocess",
    "ratio_power",
    "quiet",
)


# separate's help texts that speak of streams, as a batch says them
HELP_TEXTS = {
    "inputs": "audio files, folders, or URIs (e.g. s3://bucket/music/)",
    "outdir": "output directory (default: separated/)",
    "bits": "sample format: 16- or 24-bit integer, or 32-bit float (wav only) (default: 16)",
}


class _AsBatch:
    """Stands in for argparse's subparsers when `separate.add_parser` asks for its parser: it gets
    `batch`'s, and defines its options on it."""

    def __init__(self, sub: argparse._SubParsersAction) -> None:
        self.sub = sub

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return cast(
            argparse.ArgumentParser,
            self.sub.add_parser("batch", help=HELP, description=DESCRIPTION, epilog=EPILOG),
        )


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = separate_command.add_parser(cast(Any, _AsBatch(sub)))
    for action in p._actions:
        if action.dest == "inputs":
            action.nargs = "*"  # a manifest alone is enough
        if action.dest in REFUSED:
            action.help = argparse.SUPPRESS
        elif action.dest in HELP_TEXTS:
            action.help = HELP_TEXTS[action.dest]
    p.add_argument(
        "--manifest",
        action="append",
        default=[],
        metavar="FILE",
        help="a file listing inputs: one path a line (# comments; an .m3u playlist is one) or a .csv "
        "with a 'path' column; relative paths are relative to it (may be given more than once)",
    )
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        default=None,
        help="the Ray cluster to join: auto (the one this machine belongs to) or ray://HOST:PORT; "
        "default: start a local Ray instance in this process",
    )
    p.add_argument(
        "--actors",
        type=int,
        default=None,
        help="workers, each with its own model (default: the cluster's CPUs / --threads)",
    )
    p.add_argument("--threads", type=int, default=None, help="threads of each worker (default: 1)")
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="how often a song whose worker died is tried again on another worker (default: 2)",
    )
    p.add_argument(
        "--report",
        default=None,
        metavar="FILE",
        help="the JSONL job report, appended to: one line per song (default: OUTDIR/batch-report.jsonl)",
    )
    p.add_argument(
        "--failures",
        default=None,
        metavar="FILE",
        help="the CSV of this run's failed songs (default: OUTDIR/batch-failures.csv)",
    )
    p.set_defaults(handler=run)
    return p


def _check(args: argparse.Namespace) -> None:
    """Option checks that need neither Ray nor the model (UserError)."""
    for dest, option in REFUSED.items():
        if getattr(args, dest) not in (None, False):
            raise UserError(
                f"{option} is for `cunet separate` (one live input); a batch writes files"
            )
    if "-" in args.inputs:
        raise UserError("a batch reads files, not stdin (-); use `cunet separate -` for a pipe")
    if not args.inputs and not args.manifest:
        raise UserError("nothing to separate: give inputs or --manifest FILE")
    for option, value, least in (
        ("--actors", args.actors, 1),
        ("--threads", args.threads, 1),
        ("--retries", args.retries, 0),
    ):
        if value is not None and value < least:
            raise UserError(f"{option} must be at least {least}, got {value}")
    separate_command._check(args)


def run(args: argparse.Namespace) -> int:
    requested = separate_command.parse_instruments(args.instrument)
    _check(args)
    from ..batch.cluster import import_ray

    import_ray()  # a missing extra is one line before any other work
    from ..batch import BatchOptions, WorkerSettings, list_inputs, run_batch
    from ..engines.loading import resolve_model_path
    from ..io.audio import Excerpt
    from ..postprocess import requested_postprocess

    template = FilenameTemplate(args.filename or separate_command.DEFAULT_FILENAME).validate()
    settings = WorkerSettings(
        scratch="",
        model=None if args.model is None else str(resolve_model_path(args.model)),
        instruments=None if requested is None else tuple(requested),
        output=separate_command._output(args),
        residual=args.residual,
        filename=template.text,
        excerpt=Excerpt(args.start, args.duration).validate(),
        chunks=separate_command._chunks(args),
        postprocess=requested_postprocess(args.postprocess, args.ratio_power),
        shifts=args.shifts,
        threads=args.threads,
        options=OPTIONS,
    )
    outdir = Path(args.outdir or "separated")
    say = _printer(args.quiet)
    unlisted: list[tuple[str, str]] = []

    def input_error(arg: str, exc: Exception | str) -> None:
        text = separate_command._naming_input(message(exc), arg)
        unlisted.append((arg, text))
        print(f"error: {one_line(text)}", file=sys.stderr)

    songs = list_inputs(
        args.inputs, args.manifest, args.recursive, exclude=[outdir], note=say, error=input_error
    )
    if not songs:
        if not unlisted:
            raise UserError("no inputs found (the manifests are empty)")
        return 2
    options = BatchOptions(
        address=args.ray,
        actors=args.actors,
        threads=args.threads,
        retries=args.retries,
        force=args.force,
        quiet=args.quiet,
        report=None if args.report is None else Path(args.report),
        failures=None if args.failures is None else Path(args.failures),
    )

    def song_error(source: str, text: str) -> None:
        _write(f"error: {one_line(separate_command._naming_input(text, source))}")

    report = run_batch(songs, outdir, settings, options, say, song_error, unlisted)
    if not args.quiet:
        _write(report.summary())
    return 1 if report.totals.failed else 0


def _printer(quiet: bool) -> Any:
    return (lambda line: None) if quiet else (lambda line: _write(f"note: {one_line(line)}"))


def _write(line: str) -> None:
    """A line on stderr that leaves the progress bar whole."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)

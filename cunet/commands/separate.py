"""`cunet separate` (also the `separate` console script): write isolated instruments of one or more songs."""
from __future__ import annotations

import argparse
import sys

from ..config import INSTRUMENTS, ChunkSettings
from ..errors import CunetError, UserError, one_line
from ..tflog import native_stderr_muted, probe_devices, quiet_tensorflow

EPILOG = ("Outputs go to OUTDIR/<input name>/<instrument>.<format>; with --residual also "
          "OUTDIR/<input name>/no_<instrument>.<format> (the mixture minus the estimate). "
          "Inputs: wav, flac, ogg and anything ffmpeg decodes (mp3, m4a/aac, .stem.mp4 mixture). "
          "Mono stays mono; more than two channels are refused. Exit code 2 if any input failed.")
_DEFAULT = ChunkSettings()
POSTPROCESS_CHOICES = ("none", "ratio", "wiener")  # cunet.postprocess.MODES, here so --help imports no numpy


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("separate", help="separate instruments from songs",
                       description="Separate instruments from songs with a conditioned U-Net.", epilog=EPILOG)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files to separate")
    p.add_argument("-i", "--instrument", default="all",
                   help=f"instrument(s): {', '.join(INSTRUMENTS)}, 'all', or a comma list (default: all)")
    p.add_argument("-o", "--outdir", default="separated", help="output directory (default: separated/)")
    p.add_argument("-f", "--format", default="wav", choices=("wav", "flac", "mp3"),
                   help="output format (mp3 needs ffmpeg; default: wav, 16-bit)")
    p.add_argument("--float32", action="store_true", help="write 32-bit float wav instead of 16-bit")
    p.add_argument("--residual", action="store_true", help="also write the mixture minus each estimate")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("-m", "--model", default=None,
                   help="a .keras file, a training run directory or a SavedModel export "
                        "(default: the model shipped with cunet)")
    p.add_argument("--chunk-seconds", type=float, default=_DEFAULT.chunk_seconds,
                   help=f"processing chunk length (default: {_DEFAULT.chunk_seconds:g})")
    p.add_argument("--overlap-seconds", type=float, default=_DEFAULT.overlap_seconds,
                   help=f"cross-fade between chunks (default: {_DEFAULT.overlap_seconds:g})")
    p.add_argument("--postprocess", default=None, choices=POSTPROCESS_CHOICES,
                   help="how the instruments' masks are combined: none (each on its own), ratio (normalised to "
                        "sum to one, so the stems add up to the mixture) or wiener (multichannel Wiener filter); "
                        "default: the model's own choice. ratio and wiener compute every instrument's mask")
    p.add_argument("--ratio-power", type=float, default=1.0, help="exponent of the ratio normalisation (default: 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)
    return p


def parse_instruments(text: str, known: tuple[str, ...] = INSTRUMENTS) -> list[str] | None:
    """The names of a comma list, lower-cased, without duplicates; None for 'all'. Every name must be
    known, 'all' included in a list ('all,foo' is an error, not 'all')."""
    names = list(dict.fromkeys(t.strip().lower() for t in text.split(",") if t.strip()))
    if not names:
        raise UserError(f"no instrument given (valid: {', '.join(known)}, all)")
    for n in names:
        if n != "all" and n not in known:
            raise UserError(f"unknown instrument '{n}' (valid: {', '.join(known)}, all)")
    return None if "all" in names else names


def run(args: argparse.Namespace) -> int:
    requested = parse_instruments(args.instrument)  # fail fast, before loading TensorFlow
    if not args.outdir:
        raise UserError("empty output directory (-o ''); give a folder, e.g. -o separated")
    ChunkSettings(args.chunk_seconds, args.overlap_seconds).validate()
    quiet_tensorflow()
    from ..postprocess import Postprocess
    from ..separator import Separator

    postprocess = Postprocess(args.postprocess, args.ratio_power).validate() if args.postprocess else None
    with native_stderr_muted():  # TensorFlow is imported inside, once the model file passed the cheap checks
        separator = Separator.from_pretrained(args.model, chunk_seconds=args.chunk_seconds,
                                              overlap_seconds=args.overlap_seconds, postprocess=postprocess)
    probe_devices()
    instruments = separator.check_instruments(requested)
    failures = 0
    for path in args.inputs:
        try:
            written = separator.separate_file(path, args.outdir, instruments, fmt=args.format,
                                              residual=args.residual, force=args.force, progress=not args.quiet,
                                              float32=args.float32)
        except (CunetError, OSError) as exc:
            failures += 1
            message = f"{path}: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
            print(f"error: {one_line(_naming_input(message, path))}", file=sys.stderr)
            continue
        except Exception as exc:  # noqa: BLE001 - one bad input must not stop the others or print a traceback
            failures += 1
            print(f"error: {one_line(_naming_input(f'unexpected {type(exc).__name__}: {exc}', path))}",
                  file=sys.stderr)
            continue
        if not args.quiet:
            folder = next(iter(written.values())).parent
            print(one_line(f"{path} -> {folder}/ ({', '.join(sorted(p.name for p in written.values()))})"),
                  file=sys.stderr)
    return 2 if failures else 0


def _naming_input(message: str, path: str) -> str:
    """The message, prefixed with the input it is about unless it names it already."""
    return message if path in message else f"{path}: {message}"

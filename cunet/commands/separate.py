"""`separate` / `cunet separate`: write isolated instruments of one or more songs."""
from __future__ import annotations

import argparse
import sys

from ..config import INSTRUMENTS
from ..errors import UserError, native_stderr_muted, quiet_tensorflow

EPILOG = ("Outputs go to OUTDIR/<input name>/<instrument>.<format>; with --residual also "
          "OUTDIR/<input name>/no_<instrument>.<format> (the mixture minus the estimate). "
          "Inputs: wav, flac, ogg and anything ffmpeg decodes (mp3, m4a/aac, .stem.mp4 mixture). "
          "Mono stays mono; more than two channels are refused. Exit code 2 if any input failed.")


def configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
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
    p.add_argument("--chunk-seconds", type=float, default=12.0, help="processing chunk length (default: 12)")
    p.add_argument("--overlap-seconds", type=float, default=1.0, help="cross-fade between chunks (default: 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)
    return p


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("separate", help="separate instruments from songs",
                       description="Separate instruments from songs with a conditioned U-Net.", epilog=EPILOG)
    return configure(p)


def build_parser() -> argparse.ArgumentParser:
    """Parser of the stand-alone `separate` command."""
    p = argparse.ArgumentParser(prog="separate", description="Separate instruments from songs with a "
                                "conditioned U-Net (cunet).", epilog=EPILOG)
    return configure(p)


def parse_instruments(text: str, valid: tuple[str, ...] = INSTRUMENTS) -> list[str]:
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not names:
        raise UserError(f"no instrument given (valid: {', '.join(valid)}, all)")
    if "all" in names:
        return list(valid)
    for n in names:
        if n not in valid:
            raise UserError(f"unknown instrument '{n}' (valid: {', '.join(valid)}, all)")
    return list(dict.fromkeys(names))


def run(args: argparse.Namespace) -> int:
    parse_instruments(args.instrument)  # fail fast, before loading TensorFlow
    if args.chunk_seconds <= 0 or args.overlap_seconds < 0 or args.overlap_seconds * 2 >= args.chunk_seconds:
        raise UserError("need --chunk-seconds > 0 and 0 <= --overlap-seconds < chunk/2")
    quiet_tensorflow()
    from ..audio import AudioError
    from ..separator import ModelError, Separator

    try:
        # TensorFlow is imported inside, only once the model file passed the cheap checks.
        with native_stderr_muted():
            separator = Separator.from_pretrained(args.model, chunk_seconds=args.chunk_seconds,
                                                  overlap_seconds=args.overlap_seconds)
            if "tensorflow" in sys.modules:
                sys.modules["tensorflow"].config.list_physical_devices()  # device probing logs once: now
    except ModelError as exc:
        raise UserError(str(exc)) from None
    instruments = parse_instruments(args.instrument, separator.instruments)
    failures = 0
    for path in args.inputs:
        try:
            written = separator.separate_file(path, args.outdir, instruments, fmt=args.format,
                                              residual=args.residual, force=args.force, progress=not args.quiet,
                                              float32=args.float32)
        except (AudioError, ValueError, OSError) as exc:
            failures += 1
            message = str(exc) if not isinstance(exc, OSError) else f"{path}: {exc.strerror or exc}"
            print(f"error: {_one_line(message, path)}", file=sys.stderr)
            continue
        except Exception as exc:  # noqa: BLE001 - one bad input must not stop the others or print a traceback
            failures += 1
            print(f"error: {_one_line(f'unexpected {type(exc).__name__}: {exc}', path)}", file=sys.stderr)
            continue
        if not args.quiet:
            folder = next(iter(written.values())).parent
            print(f"{path} -> {folder}/ ({', '.join(sorted(p.name for p in written.values()))})", file=sys.stderr)
    return 2 if failures else 0


def _one_line(message: str, path: str) -> str:
    """The message on one line, naming the input it is about."""
    message = " ".join(line.strip() for line in message.splitlines() if line.strip()) or "failed"
    return message if path in message else f"{path}: {message}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `separate` console script."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

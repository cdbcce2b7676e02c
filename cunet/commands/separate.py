"""`cunet separate` (also the `separate` console script): write isolated instruments of songs, folders or a stream."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from ..config import INSTRUMENTS
from ..errors import CunetError, UserError, one_line
from ..io.naming import FilenameTemplate
from ..settings import MAX_CHUNK_SECONDS, ChunkSettings
from ..tflog import native_stderr_muted, probe_devices, quiet_tensorflow
from . import OPTIONS, add_postprocess_options, message

EPILOG = (
    "Outputs go to OUTDIR/<input name>/<instrument>.<format> (see --filename); with --residual also "
    "no_<instrument> (the mixture minus the estimate). Inputs: wav, flac, ogg and anything ffmpeg decodes "
    "(mp3, m4a/aac, .stem.mp4 mixture); folders (their audio files, -r: subfolders too); '-' reads WAV or, "
    "with --raw-format/--raw-rate/--raw-channels, raw PCM from stdin. Mono stays mono; more than two "
    "channels are refused. --stream writes raw PCM as it is computed: one stream of n_instruments x "
    "channels interleaved channels (vocals L, vocals R, drums L, ...). Exit code 2 if any input failed."
)
_DEFAULT = ChunkSettings()
SHIFTS_HELP = "network passes per chunk, their masks averaged (test-time augmentation; default: 1)"
DEFAULT_LATENCY = 1.5
# Kept here, not imported, so --help imports no numpy: cunet.io.output.CLIP_MODES,
# cunet.io.audio.BITS, cunet.io.pcm.INPUT_ENCODINGS, cunet.io.naming.DEFAULT_TEMPLATE (tests check they agree).
CLIP_CHOICES = ("rescale", "clamp", "none")
BITS_CHOICES = ("16", "24", "32f")
RAW_CHOICES = ("f32le", "s16le", "s24le")
DEFAULT_FILENAME = "{folder}/{track}/{stem}.{ext}"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "separate",
        help="separate instruments from songs",
        description="Separate instruments from songs with a conditioned U-Net.",
        epilog=EPILOG,
    )
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="audio files, folders, or - for stdin"
    )
    p.add_argument(
        "-i",
        "--instrument",
        default="all",
        help=f"instrument(s) of the model, a comma list, or 'all' (default). The shipped model has "
        f"{', '.join(INSTRUMENTS)}; other models may have others (errors list them)",
    )
    p.add_argument(
        "-o",
        "--outdir",
        default=None,
        help="output directory (default: separated/); with --stream: - for stdout (default), a new file "
        "(raw PCM, written atomically) or a named pipe",
    )
    p.add_argument(
        "-r",
        "--recursive",
        action="store_true",
        help="folders: also separate the files in subfolders",
    )
    p.add_argument(
        "--filename",
        default=None,
        help=f"output names under OUTDIR (default: {DEFAULT_FILENAME}); fields {{track}} (input name), "
        "{stem} (instrument or no_<instrument>), {ext}, {index} (instrument number, from 1; "
        "{index:02d}) and {folder} (the input's folder inside a given folder)",
        metavar="TEMPLATE",
    )
    p.add_argument(
        "-f",
        "--format",
        default=None,
        choices=("wav", "flac", "mp3"),
        help="output format (mp3 needs ffmpeg; default: wav)",
    )
    p.add_argument(
        "--bits",
        default=None,
        choices=BITS_CHOICES,
        help="sample format: 16- or 24-bit integer, or 32-bit float (wav only) (default: 16; "
        "with --stream: 32f, as f32le)",
    )
    p.add_argument("--float32", action="store_true", help="same as --bits 32f")
    p.add_argument(
        "--clip",
        default=None,
        choices=CLIP_CHOICES,
        help="samples beyond full scale: rescale (one gain for all outputs of an input, so stems still "
        "add up), clamp (counted and reported) or none (--bits 32f only) (default: none for "
        "32f, else clamp)",
    )
    p.add_argument(
        "--mp3-bitrate", type=int, default=None, help="mp3 bitrate in kbit/s (default: 320)"
    )
    p.add_argument(
        "--start", type=float, default=0.0, help="separate from this second on (default: 0)"
    )
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="separate this many seconds (default: to the end)",
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="write the separated audio as it is computed (raw PCM to -o; one input)",
    )
    p.add_argument(
        "--latency",
        type=float,
        default=None,
        help=f"most seconds between a sample in and out while keeping up with real time; sets the "
        f"chunk and cross-fade (default with --stream: {DEFAULT_LATENCY:g}; the run reports the bound "
        "and what it measured)",
    )
    p.add_argument(
        "--raw-format", default=None, choices=RAW_CHOICES, help="stdin is raw PCM in this format"
    )
    p.add_argument("--raw-rate", type=int, default=None, help="sample rate of raw stdin, Hz")
    p.add_argument("--raw-channels", type=int, default=None, help="channels of raw stdin (1 or 2)")
    p.add_argument(
        "--residual", action="store_true", help="also write the mixture minus each estimate"
    )
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument(
        "-m",
        "--model",
        default=None,
        help="a .keras file, a training run directory or a SavedModel export "
        "(default: the model shipped with cunet)",
    )
    p.add_argument(
        "--chunk-seconds",
        type=float,
        default=None,
        help=f"processing chunk length in seconds, at most {MAX_CHUNK_SECONDS:g}: memory grows with it, "
        f"about 26 MB a second with the shipped model (default: {_DEFAULT.chunk_seconds:g})",
    )
    p.add_argument("--shifts", type=int, default=1, help=SHIFTS_HELP)
    p.add_argument(
        "--overlap-seconds",
        type=float,
        default=None,
        help=f"cross-fade between chunks (default: {_DEFAULT.overlap_seconds:g})",
    )
    add_postprocess_options(
        p,
        "how the instruments' masks are combined: none (each on its own), ratio (normalised to "
        "sum to one, so the stems add up to the mixture) or wiener (multichannel Wiener filter); "
        "default: the model's own choice. ratio and wiener compute every instrument's mask",
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no notes (errors only)"
    )
    p.set_defaults(handler=run)
    return p


def parse_instruments(text: str) -> list[str] | None:
    """The names of a comma list without duplicates, None for 'all'; UserError for an empty list or 'all'
    inside a list. The names are checked against the model once it is loaded."""
    names = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not names:
        raise UserError("no instrument given (-i NAME[,NAME...] or all)")
    if any(n.lower() == "all" for n in names):
        if len(names) > 1:
            raise UserError(f"'all' cannot be combined with other instruments (got '{text}')")
        return None
    return names


def _note(args: argparse.Namespace) -> Any:
    return (
        (lambda line: None)
        if args.quiet
        else (lambda line: print(f"note: {one_line(line)}", file=sys.stderr))
    )


def _check(args: argparse.Namespace) -> None:
    """Option checks that need no model (UserError before TensorFlow loads)."""
    from ..chunking import check_latency

    if args.float32 and args.bits not in (None, "32f"):
        raise UserError(f"--float32 contradicts --bits {args.bits}")
    if args.outdir == "":
        raise UserError("empty output directory (-o ''); give a folder, e.g. -o separated")
    if args.latency is not None:
        check_latency(args.latency)
        if args.chunk_seconds is not None or args.overlap_seconds is not None:
            raise UserError(
                "--latency sets the chunk and cross-fade; leave out --chunk-seconds/--overlap-seconds"
            )
    _chunks(args)
    raw = (args.raw_format, args.raw_rate, args.raw_channels)
    if any(v is not None for v in raw):
        if any(v is None for v in raw):
            raise UserError(
                "raw stdin needs all three of --raw-format, --raw-rate and --raw-channels"
            )
        if "-" not in args.inputs:
            raise UserError(
                "--raw-format/--raw-rate/--raw-channels describe stdin; give - as an input"
            )
    if args.inputs.count("-") > 1:
        raise UserError("stdin (-) can be read once")
    if "-" in args.inputs and sys.stdin is None:
        raise UserError("stdin is closed; pipe audio into it or name input files")
    if "-" in args.inputs and sys.stdin.isatty():
        raise UserError(
            "stdin is a terminal; pipe audio into it, e.g. ffmpeg -i song.mp3 -f wav - | separate - ..."
        )
    if args.mp3_bitrate is not None and args.format != "mp3":
        raise UserError("--mp3-bitrate applies to --format mp3")
    if args.stream:
        _check_stream(args)
    elif args.outdir == "-":
        raise UserError("-o - (stdout) needs --stream; without it outputs are files in a folder")


def _check_stream(args: argparse.Namespace) -> None:
    from ..io.sink import is_fifo

    given = [
        option
        for option, value in (
            ("--format", args.format),
            ("--filename", args.filename),
            ("--residual", args.residual),
            ("-r", args.recursive),
        )
        if value
    ]
    if given:
        raise UserError(
            f"{given[0]} does not apply to --stream, which writes one raw PCM stream to -o"
        )
    if args.clip == "rescale":
        raise UserError(
            "--clip rescale needs the whole output before writing it; with --stream use clamp or none"
        )
    if len(args.inputs) != 1 or (args.inputs[0] != "-" and os.path.isdir(args.inputs[0])):
        raise UserError("--stream separates one input: a file or - (stdin)")
    out = args.outdir or "-"
    if out == "-":
        if sys.stdout is None:
            raise UserError("stdout is closed; give -o FILE or pipe the stream on")
        if sys.stdout.isatty():
            raise UserError(
                "stdout is a terminal; pipe the stream on (e.g. | ffplay -f f32le ...) or give -o FILE"
            )
    elif is_fifo(out):
        pass  # a named pipe someone reads: written as it comes, like stdout
    elif os.path.isdir(out):
        raise UserError(f"with --stream, -o is - (stdout) or a file; '{out}' is a folder")
    elif os.path.lexists(out) and not args.force:
        raise UserError(f"output '{out}' exists; use --force to overwrite")


def _output(args: argparse.Namespace) -> Any:
    from ..io.output import OutputSettings

    bits = args.bits or ("32f" if args.float32 or args.stream else "16")
    return OutputSettings(
        args.format or "wav",
        bits,
        args.clip,
        320 if args.mp3_bitrate is None else args.mp3_bitrate,
    )


def run(args: argparse.Namespace) -> int:
    requested = parse_instruments(args.instrument)  # fail fast, before loading TensorFlow
    _check(args)
    from ..io.audio import Excerpt
    from ..io.inputs import expand_inputs

    excerpt = Excerpt(args.start, args.duration).validate()
    raw = _raw(args)
    output = _output(args)
    template = FilenameTemplate(args.filename or DEFAULT_FILENAME).validate()
    note, failures = _note(args), [0]
    outdir = Path(args.outdir or "separated")

    def input_error(arg: str, exc: Exception | str) -> None:
        failures[0] += 1
        print(f"error: {one_line(_naming_input(message(exc), arg))}", file=sys.stderr)

    items = expand_inputs(
        args.inputs, args.recursive, exclude=[outdir], note=note, error=input_error
    )
    if not items:
        return 2
    # stdin and a stream's input are opened before the model loads
    with contextlib.ExitStack() as stack:
        if args.stream:
            from ..jobs import open_stream_source, stream_to_sink

            source = open_stream_source(stack, items[0], excerpt, raw)
            separator = _load(args)
            instruments = separator.check_instruments(requested)
            stream_to_sink(
                separator, source, instruments, output, args.outdir or "-", args.force, note
            )
            return 0
        spooled = None
        if any(item.is_stdin for item in items):
            from ..io.pcm import stdin_file

            try:
                spooled = stack.enter_context(stdin_file(raw))
            except CunetError as exc:
                input_error("stdin", exc)
                items = [item for item in items if not item.is_stdin]
                if not items:
                    return 2
        separator = _load(args)
        from ..jobs import separate_inputs

        separate_inputs(
            separator,
            items,
            outdir,
            separator.check_instruments(requested),
            output,
            error=input_error,
            residual=args.residual,
            force=args.force,
            progress=not args.quiet,
            filename=template.text,
            excerpt=excerpt,
            stdin=spooled,
            notes=note,
            report=None if args.quiet else lambda line: print(line, file=sys.stderr),
            options=OPTIONS,
        )
    return 2 if failures[0] else 0


def _load(args: argparse.Namespace) -> Any:
    quiet_tensorflow()
    from ..postprocess import requested_postprocess
    from ..separator import Separator

    postprocess = requested_postprocess(args.postprocess, args.ratio_power)
    chunking_given = args.chunk_seconds is not None or args.overlap_seconds is not None
    latency = args.latency
    if latency is None and args.stream and not chunking_given:
        latency = DEFAULT_LATENCY
    chunks = None if latency is not None else _chunks(args)
    # TensorFlow (if the model needs it) is imported inside, once the model file passed the cheap checks
    with native_stderr_muted():
        separator = Separator.from_pretrained(
            args.model, chunks=chunks, postprocess=postprocess, latency=latency, shifts=args.shifts
        )
    probe_devices()
    return separator


def _chunks(args: argparse.Namespace) -> ChunkSettings:
    """The chunk settings the options give (the defaults for those left out)."""
    names = ("chunk_seconds", "overlap_seconds")
    given = {name: value for name in names if (value := getattr(args, name)) is not None}
    return ChunkSettings(**given)


def _raw(args: argparse.Namespace) -> Any:
    from ..io.pcm import RawFormat

    return (
        None
        if args.raw_format is None
        else RawFormat(args.raw_format, args.raw_rate, args.raw_channels).validate()
    )


def _naming_input(text: str, path: str) -> str:
    """The message, prefixed with the input it is about unless it names it already."""
    return text if path in text else f"{path}: {text}"

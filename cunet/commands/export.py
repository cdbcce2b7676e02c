"""`cunet export`: write a model as a SavedModel (TF Serving), a `.tflite` (LiteRT) or an `.onnx` file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UserError
from ..settings import MAX_CHUNK_SECONDS, ChunkSettings
from ..tflog import import_tensorflow, probe_devices

_DEFAULT = ChunkSettings()
FORMATS = (
    "saved_model",
    "tflite",
    "onnx",
)  # cunet.export.formats.FORMATS, here so --help is instant
QUANTIZE = ("none", "float16", "int8", "int8-full")  # cunet.export.tflite.QUANTIZE_MODES
EPILOG = (
    "saved_model (default): a directory whose signatures separate raw audio in-graph: serving_default "
    "(waveform [n_samples, n_channels] at the model's sample rate + instrument name), separate_condition "
    "and spectrogram; for TF Serving write it to MODEL_BASE_PATH/<version>, e.g. --out models/cunet/1 "
    "(docs/serving.md). tflite / onnx: one file (--out model.tflite / model.onnx) holding the mask network "
    "(magnitude [batch, bins, frames, channels] + condition -> mask) with the sample rate, STFT, chunking, "
    "instruments, post-processing and provenance recorded inside; `cunet separate --model FILE` runs it "
    "without TensorFlow. --quantize (tflite): float16 weights, int8 (dynamic range) or int8-full "
    "(activations too, calibrated on --calibration-data)."
)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export",
        help="export a model as a SavedModel (TF Serving), .tflite (LiteRT) or .onnx",
        description="Export a cunet model: a SavedModel that separates raw audio in-graph, or the "
        "mask network as a .tflite or .onnx file.",
        epilog=EPILOG,
    )
    p.add_argument(
        "-m",
        "--model",
        default=None,
        help="a .keras file or a training run directory (default: the model shipped with cunet)",
    )
    p.add_argument(
        "-o",
        "--out",
        required=True,
        help="SavedModel directory (e.g. models/cunet/1), or the .tflite / .onnx file to write",
    )
    p.add_argument(
        "--format",
        default="saved_model",
        choices=FORMATS,
        help="export format (default: saved_model)",
    )
    p.add_argument(
        "--quantize",
        default="none",
        choices=QUANTIZE,
        help="tflite weights: none (float32), float16, int8 (dynamic range), int8-full (int8 activations "
        "too, calibrated; needs --calibration-data). Default: none",
    )
    p.add_argument(
        "--calibration-data",
        default=None,
        metavar="SPEC",
        help="for int8-full: a training data source as `cunet train --data` takes it, e.g. a MUSDB18 "
        "root; its training split's mixtures calibrate the activation ranges",
    )
    p.add_argument(
        "--calibration-chunks",
        type=int,
        default=8,
        help="chunks of calibration audio (each with every instrument's condition; default: 8)",
    )
    p.add_argument(
        "--chunk-seconds",
        type=float,
        default=_DEFAULT.chunk_seconds,
        help=f"chunk length in seconds, as for `separate`, at most {MAX_CHUNK_SECONDS:g} (SavedModel: "
        f"in-graph chunking; tflite: the fixed 'chunk' signature; default: {_DEFAULT.chunk_seconds:g})",
    )
    p.add_argument(
        "--overlap-seconds",
        type=float,
        default=_DEFAULT.overlap_seconds,
        help=f"cross-fade between chunks, as for `separate` (default: {_DEFAULT.overlap_seconds:g})",
    )
    p.add_argument(
        "--postprocess",
        default=None,
        choices=("none", "ratio"),
        help="how the instruments' masks are combined: in the SavedModel's waveform signatures, and as "
        "the default recorded in a tflite/onnx file (default: the model's own)",
    )
    p.add_argument(
        "--no-encode-once",
        dest="encode_once",
        action="store_false",
        help="tflite, for a model with FiLM only in the decoder: leave out the encode/decode signatures "
        "that run the encoder once per chunk for all instruments (slower, less peak memory)",
    )
    p.add_argument("--force", action="store_true", help="replace OUT if it holds an earlier export")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    if not args.out:
        raise UserError("empty output (-o ''); give one, e.g. -o models/cunet/1 or -o cunet.tflite")
    if args.format in ("tflite", "onnx") and Path(args.out).suffix.lower() != f".{args.format}":
        raise UserError(f"a {args.format} export is one file; give -o NAME.{args.format}")
    if args.quantize != "none" and args.format != "tflite":
        raise UserError("--quantize is for --format tflite")
    if not args.encode_once and args.format != "tflite":
        raise UserError("--no-encode-once is for --format tflite")
    if args.quantize == "int8-full" and not args.calibration_data:
        raise UserError("--quantize int8-full needs --calibration-data SPEC (e.g. a MUSDB18 root)")
    if not 1 <= args.calibration_chunks <= 1000:
        raise UserError(f"--calibration-chunks must be in [1, 1000], got {args.calibration_chunks}")
    chunks = ChunkSettings(args.chunk_seconds, args.overlap_seconds)  # before loading TensorFlow
    import_tensorflow(muted=True)
    probe_devices()
    from ..export.formats import export_model_file
    from ..export.savedmodel import SIGNATURES

    out = export_model_file(
        args.model,
        args.out,
        chunks=chunks,
        overwrite=args.force,
        postprocess=args.postprocess,
        fmt=args.format,
        quantize=args.quantize,
        calibration=args.calibration_data,
        calibration_chunks=args.calibration_chunks,
        encode_once=args.encode_once,
    )
    if not args.quiet:
        what = (
            f"{out}/ (signatures: {', '.join(SIGNATURES)})"
            if args.format == "saved_model"
            else f"{out} ({out.stat().st_size / 1e6:.1f} MB)"
        )
        print(f"exported {args.model or 'the shipped model'} -> {what}", file=sys.stderr)
    return 0

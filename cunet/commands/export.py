"""`cunet export`: write a model as a SavedModel for TF Serving / plain TensorFlow."""
from __future__ import annotations

import argparse
import sys

from ..config import ChunkSettings
from ..errors import UserError
from ..tflog import import_tensorflow, probe_devices

_DEFAULT = ChunkSettings()
EPILOG = ("The export holds the signatures serving_default (waveform [n_samples, n_channels] at the "
          "model's sample rate + instrument name), separate_condition (waveform + condition vector) and "
          "spectrogram (magnitude patches + conditions -> magnitude, mask); STFT, chunking and inverse STFT "
          "run inside the graph. For TF Serving write it to MODEL_BASE_PATH/<version>, e.g. "
          "--out models/cunet/1. See docs/serving.md.")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="export a model as a TensorFlow SavedModel (TF Serving)",
                       description="Export a cunet model as a SavedModel that separates raw audio in-graph.",
                       epilog=EPILOG)
    p.add_argument("-m", "--model", default=None,
                   help="a .keras file or a training run directory (default: the model shipped with cunet)")
    p.add_argument("-o", "--out", required=True, help="SavedModel directory to write, e.g. models/cunet/1")
    p.add_argument("--chunk-seconds", type=float, default=_DEFAULT.chunk_seconds,
                   help=f"in-graph processing chunk length, as for `separate` (default: {_DEFAULT.chunk_seconds:g})")
    p.add_argument("--overlap-seconds", type=float, default=_DEFAULT.overlap_seconds,
                   help=f"cross-fade between chunks, as for `separate` (default: {_DEFAULT.overlap_seconds:g})")
    p.add_argument("--postprocess", default=None, choices=("none", "ratio"),
                   help="how the waveform signatures combine the instruments' masks (default: the model's own)")
    p.add_argument("--force", action="store_true", help="replace OUT if it holds an earlier export")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    if not args.out:
        raise UserError("empty output directory (-o ''); give one, e.g. -o models/cunet/1")
    ChunkSettings(args.chunk_seconds, args.overlap_seconds).validate()  # before loading TensorFlow
    import_tensorflow(muted=True)
    probe_devices()
    from ..export import SIGNATURES, export_model_file

    out = export_model_file(args.model, args.out, chunk_seconds=args.chunk_seconds,
                            overlap_seconds=args.overlap_seconds, overwrite=args.force,
                            postprocess=args.postprocess)
    if not args.quiet:
        print(f"exported {args.model or 'the shipped model'} -> {out}/ (signatures: {', '.join(SIGNATURES)})",
              file=sys.stderr)
    return 0

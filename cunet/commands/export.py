"""`cunet export`: write a model as a SavedModel for TF Serving / plain TensorFlow."""
from __future__ import annotations

import argparse
import sys

from ..errors import UserError, quiet_tensorflow

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
    p.add_argument("--chunk-seconds", type=float, default=12.0,
                   help="in-graph processing chunk length, as for `separate` (default: 12)")
    p.add_argument("--overlap-seconds", type=float, default=1.0,
                   help="cross-fade between chunks, as for `separate` (default: 1)")
    p.add_argument("--force", action="store_true", help="replace OUT if it holds an earlier export")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    if not args.chunk_seconds > 0 or not args.overlap_seconds >= 0 \
            or args.overlap_seconds * 2 >= args.chunk_seconds:
        raise UserError("need --chunk-seconds > 0 and 0 <= --overlap-seconds < chunk/2")
    quiet_tensorflow()
    from ..export import SIGNATURES, ExportError, export_model_file
    from ..separator import ModelError

    try:
        out = export_model_file(args.model, args.out, chunk_seconds=args.chunk_seconds,
                                overlap_seconds=args.overlap_seconds, overwrite=args.force)
    except (ModelError, ExportError) as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot write '{args.out}': {exc.strerror or exc}") from None
    if not args.quiet:
        print(f"exported {args.model or 'the shipped model'} -> {out}/ (signatures: {', '.join(SIGNATURES)})",
              file=sys.stderr)
    return 0

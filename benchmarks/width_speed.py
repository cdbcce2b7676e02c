"""What a wider network would cost: all four stems of a song with LiteRT, for one model config built
at several first-layer widths (`model.first_filters`; every block's filters double from it), beside the
shipped model, measured by `separate_speed.py` in one interleaved run.

Each width is built with random weights and exported as `cunet export --format tflite` does (float32,
with the `encode`/`decode` signatures where FiLM is only in the decoder); weights do not change the
timing or the memory, so an untrained network measures what a trained one of that width would cost.

    python benchmarks/width_speed.py --config configs/ablations/a26_tdf_encoder.yaml --widths 8,10,12,16
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cunet.config import load_config
from cunet.errors import ConfigError
from cunet.export.tflite import export_tflite
from cunet.nn.models import build_model
from cunet.provenance import make_provenance

ROOT = Path(__file__).resolve().parents[1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the model config to widen")
    parser.add_argument(
        "--widths",
        default="8,10,12,16",
        help="comma list of first-layer filters (default: 8,10,12,16)",
    )
    parser.add_argument("--lengths", default="180", help="song lengths in seconds (default: 180)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="fresh processes per case (default: 3)"
    )
    parser.add_argument(
        "--no-shipped", action="store_true", help="leave the shipped model out of the run"
    )
    args = parser.parse_args(argv)
    try:
        widths = [int(w) for w in args.widths.split(",") if w.strip()]
    except ValueError:
        parser.error(f"--widths wants a comma list of integers, got '{args.widths}'")
    try:  # every width is checked before any is built
        base = load_config(args.config)
        configs = {
            width: dataclasses.replace(
                base, model=dataclasses.replace(base.model, first_filters=width)
            ).validate()
            for width in widths
        }
    except ConfigError as exc:
        parser.error(str(exc))
    engines = [] if args.no_shipped else ["--engine", "shipped=cunet/pretrained/default.tflite"]
    with tempfile.TemporaryDirectory(prefix="cunet-widths-") as tmp:
        for width, config in configs.items():
            model = build_model(config)
            path = Path(tmp) / f"w{width}.tflite"
            export_tflite(model, config, make_provenance(config.to_dict()), path)
            print(f"w{width}: first_filters {width}, {model.count_params():,} weights", flush=True)
            engines += ["--engine", f"w{width}={path}"]
        command = [
            sys.executable,
            str(ROOT / "benchmarks" / "separate_speed.py"),
            "--lengths",
            args.lengths,
            "--repeats",
            str(args.repeats),
            "--only-all",
            *engines,
        ]
        return subprocess.run(command, cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())

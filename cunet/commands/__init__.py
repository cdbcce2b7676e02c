"""CLI sub-commands: each module defines `add_parser(subparsers)` and imports heavy modules lazily."""

from __future__ import annotations

import argparse

from ..errors import CunetError

# cunet.postprocess.MODES, kept here so that --help imports no numpy (tests check they agree).
POSTPROCESS_CHOICES = ("none", "ratio", "wiener")

# The options that set the library's named settings: errors show these instead of the API's names
# (`CunetError.render`), e.g. "--start 5 s is past the end" where the API says "start 5 s ...".
OPTIONS = {
    "chunk_seconds": "--chunk-seconds",
    "overlap_seconds": "--overlap-seconds",
    "latency": "--latency",
    "shifts": "--shifts",
    "start": "--start",
    "duration": "--duration",
    "bits": "--bits",
    "clip": "--clip",
    "mp3_bitrate": "--mp3-bitrate",
    "format": "--format",
    "force": "--force",
    "filename": "--filename",
    "raw_format": "--raw-format",
    "raw_rate": "--raw-rate",
    "raw_channels": "--raw-channels",
    "quantize": "--quantize",
    "calibration": "--calibration-data",
    "data": "--data",
    "map": "--map",
    "instruments": "--instruments",
    "no_model": "--no-model",
    "split": "--split",
    "out": "--out",
    "init_from": "--init-from",
}


def message(exc: BaseException | str) -> str:
    """The text of an error as the command line shows it (options, not API names)."""
    return exc.render(OPTIONS) if isinstance(exc, CunetError) else str(exc)


def add_postprocess_options(parser: argparse.ArgumentParser, postprocess_help: str) -> None:
    """--postprocess and --ratio-power, as `separate` and `evaluate` both take them (None: the model's own)."""
    parser.add_argument(
        "--postprocess", default=None, choices=POSTPROCESS_CHOICES, help=postprocess_help
    )
    parser.add_argument(
        "--ratio-power",
        type=float,
        default=None,
        help="exponent the masks are raised to before the ratio normalisation; implies "
        "--postprocess ratio (default: the model's own, model.ratio_power)",
    )

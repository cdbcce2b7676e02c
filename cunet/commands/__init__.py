"""CLI sub-commands: each module defines `add_parser(subparsers)` and imports heavy modules lazily."""

from __future__ import annotations

from ..errors import CunetError

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

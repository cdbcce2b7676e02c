"""`cunet ui`: separate, look and listen in the browser (a local web app; needs the `ui` extra)."""

from __future__ import annotations

import argparse
import math
import sys

from ..errors import Interrupted, UserError

DEFAULT_PORT = 8765
DEFAULT_MAX_UPLOAD_MB = 1024
# MB: smaller limits refuse every song (a minute of wav is 10 MB); larger than any disk it would fill
MAX_UPLOAD_MB_RANGE = (1, 1_000_000)
EPILOG = (
    "Prints the address to open (with a random access token) and opens a browser where one is available. "
    "Songs are separated one at a time, in the order they were dropped, and play while they are separated; "
    "their files live in a temporary folder deleted on exit. Needs: pip install 'cunet[ui]'."
)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "ui",
        help="separate, look and listen in the browser (local web app)",
        description="Start a local web app: drop songs, hear and download their stems.",
        epilog=EPILOG,
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this computer only; 0.0.0.0: every network)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port (default: {DEFAULT_PORT}; 0: any free port)",
    )
    p.add_argument(
        "-m",
        "--model",
        default=None,
        help="a .keras, .tflite or .onnx file, or a training run directory (default: the shipped model)",
    )
    p.add_argument(
        "--no-browser", action="store_true", help="only print the address; open no browser"
    )
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_MB,
        help=f"largest file accepted, in MB (default: {DEFAULT_MAX_UPLOAD_MB}; "
        f"{MAX_UPLOAD_MB_RANGE[0]} to {MAX_UPLOAD_MB_RANGE[1]:,})",
    )
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    # every number is checked before any work: no traceback, no limit that refuses every song
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be between 0 and 65535, got {args.port}")
    low, high = MAX_UPLOAD_MB_RANGE
    if not (math.isfinite(args.max_upload_mb) and low <= args.max_upload_mb <= high):
        raise UserError(
            f"--max-upload-mb must be a number of MB from {low} to {high}, got {_number(args.max_upload_mb)}"
        )
    # Without the `ui` extra these raise ImportError, which `cli.main` reports as one line naming it.
    import uvicorn  # noqa: F401 - imported by `serve`; here so it is missed before any work

    from ..ui.server import serve

    try:
        serve(args.host, args.port, args.model, not args.no_browser, int(args.max_upload_mb * 1e6))
    except KeyboardInterrupt as exc:
        if isinstance(exc, Interrupted):  # SIGTERM, SIGHUP: reported as for every command
            raise
        # Ctrl-C: the way to stop
        print("cunet ui: stopped; the session's files are deleted", file=sys.stderr)
    return 0


def _number(x: float) -> str:
    """`x` as typed: 2000000 rather than 2e+06 or 2000000.0."""
    return str(int(x)) if math.isfinite(x) and x.is_integer() else repr(x)

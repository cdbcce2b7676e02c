"""Command-line interface: `cunet {separate,train,evaluate,export}`, and `separate` (= `cunet separate`).

Command modules import heavy modules (TensorFlow, the model code) only inside their handlers, so
`--help` is instant. `main` is the one place errors reach the user: any `CunetError` is printed as one
`error: ...` line (control characters escaped) with exit code 2; Ctrl-C, SIGTERM and SIGHUP unwind
the work (partial outputs are removed) and exit with 128 + the signal number.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from . import __version__
from .commands import message
from .errors import CunetError, Interrupted, missing_extra, one_line

EXIT_USAGE = 2
# Each command module defines `add_parser(subparsers)`; heavy imports happen in its handler.
_COMMAND_MODULES = ("separate", "train", "evaluate", "export", "synth")
# The extra that brings what a command needs besides TensorFlow (default: "tf" alone).
_TF_EXTRA = {"train": "train", "evaluate": "train"}
# Termination signals handled like Ctrl-C (unless the parent set them to be ignored, e.g. nohup).
TERMINATION_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _add_commands(sub: argparse._SubParsersAction) -> None:
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"cunet.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"cunet.commands.{name}":
                raise
            continue
        module.add_parser(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cunet", description="Conditioned U-Net music source separation."
    )
    parser.add_argument("--version", action="version", version=f"cunet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_commands(sub)
    return parser


@contextlib.contextmanager
def termination_raises() -> Iterator[None]:
    """Meanwhile SIGTERM and SIGHUP raise `Interrupted` (a KeyboardInterrupt) in the main thread, so they
    unwind like Ctrl-C and the atomic writers remove their partial files. A second signal terminates at
    once. Signals the parent set to be ignored stay ignored; outside the main thread this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        for sig in previous:
            signal.signal(sig, signal.SIG_DFL)
        raise Interrupted(signum)

    previous = {sig: signal.getsignal(sig) for sig in TERMINATION_SIGNALS}
    previous = {sig: old for sig, old in previous.items() if old is not signal.SIG_IGN}
    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; returns the exit code (0 ok, 1 partial failure (evaluate), 2 error, 128+N signal N)."""
    args = build_parser().parse_args(argv)
    try:
        with termination_raises():
            return int(args.handler(args) or 0)
    except CunetError as exc:
        print(f"error: {one_line(message(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as exc:  # an optional dependency: one line naming the extra to install
        tf_extra = _TF_EXTRA.get(args.command, "tf")
        missing = missing_extra(exc, f"cunet {args.command}", tf_extra)
        if missing is None:
            raise
        print(f"error: {one_line(str(missing))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        signum, name = (
            (exc.signum, exc.name) if isinstance(exc, Interrupted) else (signal.SIGINT, "SIGINT")
        )
        print(f"error: interrupted ({name})", file=sys.stderr)
        return 128 + int(signum)


def separate_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `separate` console script: `cunet separate ARGS`."""
    return main(["separate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

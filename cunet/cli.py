"""Command-line interface: `cunet {separate,train,evaluate,export,ui}`, and `separate` (= `cunet separate`).

Command modules import heavy modules (TensorFlow, the model code) only inside their handlers, so
`--help` is instant. `main` is the one place errors reach the user: any `CunetError` is printed as one
`error: ...` line (control characters escaped) with exit code 2; Ctrl-C, SIGTERM and SIGHUP unwind
the work (partial outputs are removed) and exit with 128 + the signal number.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from . import __version__
from .commands import message
from .errors import CunetError, Interrupted, missing_extra, one_line

EXIT_USAGE = 2
# Each command module defines `add_parser(subparsers)`; heavy imports happen in its handler.
_COMMAND_MODULES = ("separate", "train", "evaluate", "export", "synth", "ui", "batch")
# The extra that brings what a command needs besides TensorFlow (default: "tf" alone).
_TF_EXTRA = {"train": "train", "evaluate": "train"}
# Termination signals handled like Ctrl-C (unless the parent set them to be ignored, e.g. nohup).
TERMINATION_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its errors as one `error:` line and a hint to --help (not the usage block)."""

    def error(self, message: str) -> NoReturn:
        stream = sys.stderr or sys.stdout
        if stream is not None:
            print(f"error: {one_line(message)} (see '{self.prog} --help')", file=stream, flush=True)
        sys.exit(EXIT_USAGE)


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
    parser = ArgumentParser(prog="cunet", description="Conditioned U-Net music source separation.")
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


def _fd_usable(fd: int, write: bool) -> bool | None:
    """Whether descriptor `fd` is open for reading (or writing); None if it is not open at all."""
    try:
        mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    except OSError:
        return None
    return mode == os.O_RDWR or mode == (os.O_WRONLY if write else os.O_RDONLY)


def _closed_streams_checked() -> None:
    """A standard stream the caller closed (`<&-`, `>&-`, `2>&-`; or whose descriptor now holds a
    file the launcher opened) becomes None for stdin and stdout, so commands that need one refuse it
    in one line, and /dev/null for stderr: errors cannot be shown, but the exit code is still 2."""
    for name, fd, write in (("stdin", 0, False), ("stdout", 1, True)):
        if getattr(sys, name) is not None and not _fd_usable(fd, write):
            setattr(sys, name, None)
    usable = _fd_usable(2, True)
    if sys.stderr is None or not usable:
        null = os.open(os.devnull, os.O_WRONLY)
        if usable is None and null != 2:
            os.dup2(null, 2)  # native libraries write to descriptor 2 too
            os.close(null)
            null = 2
        sys.stderr = open(null, "w", closefd=null != 2)  # noqa: SIM115 - for the process's life


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; returns the exit code (0 ok, 1 partial failure (evaluate), 2 error, 128+N signal N).

    Standard streams the caller closed (`2>&-`) are None in Python: stderr then goes to /dev/null, so
    errors still end in exit code 2; commands refuse a closed stdin or stdout they need."""
    _closed_streams_checked()
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

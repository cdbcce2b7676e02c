"""Command-line interface: `cunet {separate,train,evaluate,export}` and the `separate` shortcut.

TensorFlow is imported only inside command handlers so `--help` is instant.
Errors the user can fix are reported as one line on stderr with exit code 2.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .errors import UserError

EXIT_USAGE = 2

# Each command module defines `add_parser(subparsers)`; heavy imports happen in its handler.
_COMMAND_MODULES = ("separate", "train", "evaluate", "export")


def _add_commands(sub: argparse._SubParsersAction) -> None:
    import importlib

    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"cunet.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"cunet.commands.{name}":
                raise
            continue
        module.add_parser(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cunet", description="Conditioned U-Net music source separation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

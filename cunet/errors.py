"""Errors shown to users, and process-level helpers shared by the commands."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


class UserError(Exception):
    """An error caused by input the user gave; the CLI prints it as one line and exits with code 2."""


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up logging (must run before TensorFlow is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def native_stderr_muted() -> Iterator[None]:
    """Send fd 2 to /dev/null meanwhile: TensorFlow's C++ start-up chatter ("I0000 ... oneDNN", "cuInit"
    lines, which TF_CPP_MIN_LOG_LEVEL does not silence) would bury our one-line errors. Python exceptions
    still propagate (and are reported after fd 2 is back); set CUNET_TF_LOGS=1 to see the chatter."""
    if os.environ.get("CUNET_TF_LOGS"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


class DataError(ValueError):
    """Training or evaluation data is missing or unusable (one user-facing line)."""

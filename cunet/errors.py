"""Errors shown to users, and process-level helpers shared by the commands."""
from __future__ import annotations

import os


class UserError(Exception):
    """An error caused by input the user gave; the CLI prints it as one line and exits with code 2."""


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up logging (must run before TensorFlow is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

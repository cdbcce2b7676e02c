"""TensorFlow's start-up logging kept off the user's terminal, and the one place TensorFlow is imported from
outside the TF-only modules (so the environment is set before the import)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any


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


def tensorflow_backend() -> bool:
    """Whether Keras will run on TensorFlow, decided as Keras decides it but without importing Keras:
    KERAS_BACKEND, else the "backend" of `$KERAS_HOME/keras.json` (default `~/.keras`), else TensorFlow.
    Training also runs on JAX or torch, where TensorFlow need not be installed."""
    backend = os.environ.get("KERAS_BACKEND")
    if not backend:
        home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
        try:
            with open(os.path.join(home, "keras.json"), encoding="utf-8") as fh:
                backend = json.load(fh).get("backend")
        except (OSError, ValueError, AttributeError):
            backend = None
    return (backend or "tensorflow") == "tensorflow"


def import_tensorflow(muted: bool = False) -> Any:
    """The tensorflow module, imported with its logging quietened; `muted`: also with fd 2 muted
    during the import (for commands whose stderr must hold only `error:` lines)."""
    quiet_tensorflow()
    if muted and "tensorflow" not in sys.modules:
        with native_stderr_muted():
            import tensorflow as tf
        return tf
    import tensorflow as tf

    return tf


def probe_devices() -> None:
    """Let TensorFlow find its devices now, muted: it logs (e.g. "failed call to cuInit") the first time."""
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        with native_stderr_muted():
            tf.config.list_physical_devices()

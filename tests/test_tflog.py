"""TensorFlow's start-up chatter stays off stderr; Python's own errors do not."""

from __future__ import annotations

import os
import subprocess
import sys

CODE = """
import os, sys
from cunet.tflog import import_tensorflow, native_stderr_muted, probe_devices
with native_stderr_muted():
    os.write(2, b"native chatter\\n")
tf = import_tensorflow(muted=True)
probe_devices()
print("python error line", file=sys.stderr)
assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2" and tf.constant(1).numpy() == 1
"""


def test_start_up_lines_are_muted() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CODE],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            k: v
            for k, v in os.environ.items()
            if k not in ("TF_CPP_MIN_LOG_LEVEL", "CUNET_TF_LOGS")
        },
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["python error line"], proc.stderr


def test_tensorflow_backend_is_decided_as_keras_decides(tmp_path, monkeypatch) -> None:
    from cunet.tflog import tensorflow_backend

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert tensorflow_backend()  # no keras.json: Keras's default
    (tmp_path / "keras.json").write_text('{"backend": "jax"}')
    assert not tensorflow_backend()
    monkeypatch.setenv(
        "KERAS_BACKEND", "tensorflow"
    )  # the variable wins over the file, as in Keras
    assert tensorflow_backend()
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert not tensorflow_backend()
    monkeypatch.delenv("KERAS_BACKEND")
    (tmp_path / "keras.json").write_text("not json")
    assert tensorflow_backend()

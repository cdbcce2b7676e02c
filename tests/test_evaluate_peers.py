"""cunet.evaluate.peers: the Spleeter driver's protocol, run against a stand-in `spleeter` package (the
real one needs its own TensorFlow 2.12 environment) in this interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cunet.evaluate.peers import (
    DEFAULT_SPLEETER_PYTHON,
    SPLEETER_RATE,
    run_spleeter,
    spleeter_python,
    spleeter_ready,
)


def test_spleeter_python_prefers_argument_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUNET_SPLEETER_PYTHON", raising=False)
    assert spleeter_python() == DEFAULT_SPLEETER_PYTHON
    monkeypatch.setenv("CUNET_SPLEETER_PYTHON", "/opt/sp/bin/python")
    assert spleeter_python() == Path("/opt/sp/bin/python")
    assert spleeter_python("~/x/python") == Path("~/x/python").expanduser()


def test_spleeter_ready_needs_the_interpreter_and_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not spleeter_ready(tmp_path / "no-python")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # no spleeter there
    assert not spleeter_ready(Path(sys.executable))


def test_run_spleeter_writes_both_stems_per_mixture(
    tmp_path: Path, spleeter_stand_in: Path
) -> None:
    assert spleeter_ready(spleeter_stand_in)
    rng = np.random.default_rng(0)
    jobs = []
    for i in range(2):
        src = tmp_path / f"{i}.wav"
        sf.write(src, rng.uniform(-0.5, 0.5, (4410, 2)).astype(np.float32), SPLEETER_RATE, "FLOAT")
        jobs.append((src, tmp_path / f"out{i}"))
    run_spleeter(spleeter_stand_in, jobs)
    for src, out in jobs:
        mixture = sf.read(src, dtype="float32")[0]
        vocals, rate = sf.read(out / "vocals.wav", dtype="float32")
        accompaniment = sf.read(out / "accompaniment.wav", dtype="float32")[0]
        assert rate == SPLEETER_RATE
        np.testing.assert_allclose(vocals, mixture * 0.25, atol=1e-7)
        np.testing.assert_allclose(accompaniment, mixture * 0.75, atol=1e-7)


def test_run_spleeter_reports_the_failure(tmp_path: Path, spleeter_stand_in: Path) -> None:
    src = tmp_path / "low.wav"
    sf.write(src, np.zeros((800, 2), np.float32), 8000)  # the driver accepts 44.1 kHz only
    with pytest.raises(RuntimeError, match="Spleeter failed: .*AssertionError"):
        run_spleeter(spleeter_stand_in, [(src, tmp_path / "out")])

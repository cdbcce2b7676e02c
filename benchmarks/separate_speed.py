"""Separation speed and peak memory: `Separator.separate_file` on a synthetic song.

For a synthetic stereo 44.1 kHz WAV of --seconds (default 180 s, a 3-minute
song) this prints, for one instrument (vocals) and for all four, the wall
seconds of `separate_file` (model already loaded; load time shown apart),
the realtime factor, and the peak resident memory of the process. Each
measurement runs in a fresh Python subprocess, so peaks (VmHWM / ru_maxrss)
belong to one case only; figures are medians over --repeats.

    python benchmarks/separate_speed.py                        # shipped model, 3-minute input
    python benchmarks/separate_speed.py --seconds 20 --repeats 1
    python benchmarks/separate_speed.py --model runs/default/best.keras

Without --model the shipped model (cunet/pretrained/default.keras) is used if
it exists, otherwise a default-config model with random weights (same size
and speed, useless output); the output says which.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
CASES: dict[str, list[str] | None] = {"one instrument (vocals)": ["vocals"], "all four instruments": None}


def write_synthetic_song(path: Path, seconds: float, sample_rate: int = 44100, seed: int = 0) -> Path:
    """A stereo 16-bit WAV: tones, a bass line and noise bursts, written in blocks (bounded memory)."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    total = int(seconds * sample_rate)
    block = 10 * sample_rate
    with sf.SoundFile(path, "w", sample_rate, 2, subtype="PCM_16") as out:
        for start in range(0, total, block):
            t = np.arange(start, min(total, start + block)) / sample_rate
            voice = 0.15 * np.sin(2 * np.pi * 330 * t + 2 * np.sin(2 * np.pi * 5 * t))
            bass = 0.15 * np.sin(2 * np.pi * 55 * t)
            drums = 0.15 * np.exp(-30 * ((t * 2) % 1.0)) * rng.standard_normal(len(t))
            left, right = voice * 0.7 + bass + drums, voice * 0.3 + bass + drums * 0.8
            out.write(np.stack([left, right], axis=1).astype(np.float32))
    return path


def random_default_model(folder: Path) -> Path:
    """A default-config model with random weights, saved like training saves models (provenance inside)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from cunet.config import load_config
    from cunet.models import build_model
    from cunet.provenance import make_provenance, save_model

    config = load_config(ROOT / "configs" / "default.yaml")
    keras.utils.set_random_seed(0)
    model = build_model(config)
    return save_model(model, folder / "random-default.keras",
                      make_provenance(config.to_dict(), data={"note": "random weights (benchmark)"}))


def _peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (VmHWM; ru_maxrss as a fallback)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(model: str, audio: str, instruments: list[str] | None, outdir: str) -> dict[str, Any]:
    """One measurement in this (fresh) process: load the model, separate once, report times and memory."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from cunet.separator import Separator

    started = time.perf_counter()
    separator = Separator.from_pretrained(model)
    load_s = time.perf_counter() - started
    rss_loaded = _rss_mib()
    started = time.perf_counter()
    outputs = separator.separate_file(audio, outdir, instruments=instruments, progress=False, force=True)
    wall_s = time.perf_counter() - started
    return {"load_s": load_s, "wall_s": wall_s, "rss_after_load_mib": rss_loaded, "peak_rss_mib": _peak_rss_mib(),
            "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "outputs": sorted(outputs)}


def run_case(model: Path, audio: Path, instruments: list[str] | None, outdir: Path) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--model", str(model),
               "--input", str(audio), "--outdir", str(outdir)]
    if instruments:
        command += ["--instruments", ",".join(instruments)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"worker failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="length of the synthetic input")
    parser.add_argument("--model", default=None, help="model file or run directory (default: shipped model)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per case; medians are reported")
    parser.add_argument("--only-all", action="store_true",
                        help="measure only the all-four-instruments case (e.g. for long memory runs)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--outdir", help=argparse.SUPPRESS)
    parser.add_argument("--instruments", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        instruments = args.instruments.split(",") if args.instruments else None
        print(json.dumps(worker(args.model, args.input, instruments, args.outdir)))
        return 0

    from cunet.modelio import DEFAULT_MODEL

    with tempfile.TemporaryDirectory(prefix="cunet-sepbench-") as tmp:
        tmp_dir = Path(tmp)
        if args.model:
            model, which = Path(args.model), f"given model {args.model}"
        elif DEFAULT_MODEL.exists():
            model, which = DEFAULT_MODEL, f"shipped model {DEFAULT_MODEL.relative_to(ROOT)}"
        else:
            model = random_default_model(tmp_dir)
            which = "default-config model with RANDOM weights (no shipped model found)"
        audio = write_synthetic_song(tmp_dir / "song.wav", args.seconds)
        print(f"model:  {which}")
        print(f"input:  synthetic stereo 44.1 kHz WAV, {args.seconds:g} s; {os.cpu_count()} CPUs; "
              f"medians of {args.repeats} fresh processes per case", flush=True)
        print(f"{'case':26s} {'wall s':>8s} {'x realtime':>10s} {'RTF':>7s} {'load s':>7s} "
              f"{'RSS loaded MiB':>14s} {'peak RSS MiB':>12s}")
        cases = {k: v for k, v in CASES.items() if v is None or not args.only_all}
        for name, instruments in cases.items():
            runs = [run_case(model, audio, instruments, tmp_dir / f"out{r}") for r in range(args.repeats)]
            wall = statistics.median(r["wall_s"] for r in runs)
            load = statistics.median(r["load_s"] for r in runs)
            loaded = statistics.median(r["rss_after_load_mib"] for r in runs)
            peak = statistics.median(r["peak_rss_mib"] for r in runs)
            walls = ", ".join(f"{r['wall_s']:.2f}" for r in runs)
            outputs = ", ".join(runs[0]["outputs"])
            print(f"{name:26s} {wall:8.2f} {args.seconds / wall:10.1f} {wall / args.seconds:7.3f} {load:7.2f} "
                  f"{loaded:14.0f} {peak:12.0f}   (wall per repeat: {walls}; outputs: {outputs})", flush=True)
    print("x realtime = audio seconds / wall seconds; RTF = wall / audio (lower is faster). Peak RSS is the whole "
          "process (Python, TensorFlow, model, separation), read from VmHWM.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

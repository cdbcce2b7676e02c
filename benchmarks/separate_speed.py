"""Separation speed and peak memory of `cunet separate`, end to end, for several engines in one run.

Every measurement is one fresh `python -m cunet.cli separate` process on a synthetic stereo 44.1 kHz
WAV: wall seconds from process start to the stems written (Python start-up, imports, model loading,
reading, separating and writing included), the part spent loading the model, and the process's peak
resident memory (VmHWM). Engines run interleaved (A, B, A, B, ...) so a background load drifting
during the run affects them alike; figures are medians over --repeats.

    python benchmarks/separate_speed.py                                  # 3 s and 3 min; LiteRT and Keras
    python benchmarks/separate_speed.py --lengths 600,3600 --repeats 1 --only-all     # memory on long songs
    python benchmarks/separate_speed.py --engine int8=model-int8.tflite --engine litert=cunet/pretrained/default.tflite
    python benchmarks/separate_speed.py --engine a=A.tflite --engine a10=A.tflite --chunk a10=10   # chunk lengths

Engines are NAME=MODEL pairs (--engine, repeatable); the model's file type picks what runs it
(`.tflite`: LiteRT, `.keras`: TensorFlow). Default: `litert` (the shipped cunet/pretrained/default.tflite)
and `keras` (its source, cunet/pretrained/default.keras).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CASES: dict[str, str] = {"all four": "all", "vocals": "vocals"}
PARTS = (
    "load_s",
    "network_s",
    "dsp_s",
    "decode_s",
    "encode_s",
)  # of the wall time, measured in the worker
WORKER = """
import json, sys, time
t0 = time.perf_counter()
import cunet.separator as S
from cunet.chunk_separator import ChunkSeparator
from cunet.io.audio import AudioReader
from cunet.io.writer import AtomicAudioWriter
from cunet.cli import main
spent = {"load": 0.0, "network": 0.0, "chunks": 0.0, "decode": 0.0, "encode": 0.0}
def timed(key, function):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - start
    return wrapper
S.Separator.from_pretrained = classmethod(timed("load", S.Separator.from_pretrained.__func__))
separate_chunk = ChunkSeparator.separate_chunk
def chunk(self, *args, **kwargs):
    if "masks" not in vars(self.engine):  # the network: the engine's masks, whatever the engine
        self.engine.masks = timed("network", self.engine.masks)
    return separate_chunk(self, *args, **kwargs)
ChunkSeparator.separate_chunk = timed("chunks", chunk)
blocks = AudioReader.blocks
def timed_blocks(self, *args, **kwargs):
    source = blocks(self, *args, **kwargs)
    step = timed("decode", next)
    while True:
        try:
            yield step(source)
        except StopIteration:
            return
AudioReader.blocks = timed_blocks
AudioReader.__init__ = timed("decode", AudioReader.__init__)
for name in ("__init__", "write", "finish", "commit"):
    setattr(AtomicAudioWriter, name, timed("encode", getattr(AtomicAudioWriter, name)))
code = main(sys.argv[1:])
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(json.dumps({"code": code, "load_s": spent["load"], "network_s": spent["network"],
                  "dsp_s": spent["chunks"] - spent["network"], "decode_s": spent["decode"],
                  "encode_s": spent["encode"], "in_process_s": time.perf_counter() - t0,
                  "peak_rss_mib": int(status["VmHWM"].split()[0]) / 1024,
                  "heavy": sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))[:1]}))
"""


def write_synthetic_song(
    path: Path, seconds: float, sample_rate: int = 44100, seed: int = 0
) -> Path:
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


def run_cli(
    model: Path, audio: Path, instrument: str, outdir: Path, chunk_seconds: float | None = None
) -> dict[str, Any]:
    """One `cunet separate` in a fresh process: wall seconds from spawn to exit, and the worker's figures.

    chunk_seconds: `separate --chunk-seconds` (None: its default)."""
    chunking = [] if chunk_seconds is None else ["--chunk-seconds", f"{chunk_seconds:g}"]
    args = [
        "separate",
        str(audio),
        "-o",
        str(outdir),
        "-i",
        instrument,
        "--model",
        str(model),
        "--force",
        "-q",
        *chunking,
    ]
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"separate failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    shutil.rmtree(outdir, ignore_errors=True)
    return {**result, "wall_s": wall}


def parse_engines(values: Sequence[str]) -> dict[str, Path]:
    if not values:
        from cunet.engines.loading import DEFAULT_MODEL, DEFAULT_TFLITE

        engines = {"keras": DEFAULT_MODEL}
        if DEFAULT_TFLITE.exists():
            engines = {"litert": DEFAULT_TFLITE, **engines}
        return engines
    engines = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not Path(path).exists():
            raise SystemExit(f"--engine wants NAME=EXISTING_MODEL, got '{value}'")
        engines[name] = Path(path)
    return engines


def parse_chunks(values: Sequence[str], engines: Mapping[str, Path]) -> dict[str, float]:
    """{engine name: chunk seconds} from NAME=SECONDS values; SystemExit on a bad one."""
    chunks: dict[str, float] = {}
    for value in values:
        name, _, seconds = value.partition("=")
        try:
            chunks[name] = float(seconds)
        except ValueError:
            chunks[name] = 0.0
        if name not in engines or not 0 < chunks[name] < 1e4:  # NaN fails too
            raise SystemExit(f"--chunk wants NAME=SECONDS for a named engine, got '{value}'")
    return chunks


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lengths", default="3,180", help="comma list of song lengths in seconds (default: 3,180)"
    )
    parser.add_argument(
        "--engine",
        action="append",
        default=[],
        metavar="NAME=MODEL",
        help="an engine to measure (repeatable; default: litert and keras, the shipped model)",
    )
    parser.add_argument(
        "--chunk",
        action="append",
        default=[],
        metavar="NAME=SECONDS",
        help="separate an engine's song in chunks of SECONDS (repeatable; default: separate's own)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="fresh processes per case; medians are reported"
    )
    parser.add_argument(
        "--only-all", action="store_true", help="only the all-four-instruments case"
    )
    args = parser.parse_args(argv)
    engines = parse_engines(args.engine)
    chunks = parse_chunks(args.chunk, engines)
    lengths = [float(x) for x in args.lengths.split(",") if x.strip()]
    cases = {k: v for k, v in CASES.items() if v == "all" or not args.only_all}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    shown = (
        f"{n}={p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}" for n, p in engines.items()
    )
    print(f"engines: {', '.join(shown)}")
    if chunks:
        print(
            "chunks: "
            + ", ".join(f"{n} {s:g} s" for n, s in chunks.items())
            + " (others: the default)"
        )
    print(
        f"input: synthetic stereo 44.1 kHz 16-bit WAV; {os.cpu_count()} CPUs, load average {load:.1f} at start; "
        f"medians of {args.repeats} fresh processes per case, engines interleaved",
        flush=True,
    )
    print(
        f"{'song':>7s} {'case':9s} {'engine':10s} {'wall s':>7s} {'load s':>7s} {'net s':>6s} "
        f"{'dsp s':>6s} {'dec s':>6s} {'enc s':>6s} {'other s':>7s} {'x realtime':>10s} "
        f"{'peak RSS MiB':>12s}  per repeat (wall s)"
    )
    with tempfile.TemporaryDirectory(prefix="cunet-sepbench-") as tmp:
        tmp_dir = Path(tmp)
        for seconds in lengths:
            audio = write_synthetic_song(tmp_dir / f"song{seconds:g}.wav", seconds)
            for case, instrument in cases.items():
                runs: dict[str, list[dict[str, Any]]] = {name: [] for name in engines}
                for _ in range(args.repeats):
                    for name, model in engines.items():
                        runs[name].append(
                            run_cli(model, audio, instrument, tmp_dir / "out", chunks.get(name))
                        )
                for name, results in runs.items():
                    med = {
                        key: statistics.median(r[key] for r in results)
                        for key in (
                            "wall_s",
                            "load_s",
                            "network_s",
                            "dsp_s",
                            "decode_s",
                            "encode_s",
                        )
                    }
                    other = statistics.median(
                        r["wall_s"] - sum(r[k] for k in PARTS) for r in results
                    )
                    peak = statistics.median(r["peak_rss_mib"] for r in results)
                    walls = ", ".join(f"{r['wall_s']:.2f}" for r in results)
                    tf = " (TensorFlow imported)" if results[0]["heavy"] else ""
                    print(
                        f"{seconds:6g}s {case:9s} {name:10s} {med['wall_s']:7.2f} {med['load_s']:7.2f} "
                        f"{med['network_s']:6.2f} {med['dsp_s']:6.2f} {med['decode_s']:6.2f} "
                        f"{med['encode_s']:6.2f} {other:7.2f} {seconds / med['wall_s']:10.1f} "
                        f"{peak:12.0f}  {walls}{tf}",
                        flush=True,
                    )
            audio.unlink()
    if hasattr(os, "getloadavg"):
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(
        "wall = process start to stems written (CLI, fresh process); load = Separator.from_pretrained "
        "inside it; net = the engine's masks (the network); dsp = the rest of each chunk's separation "
        "(STFT, post-processing, inverse STFT); dec = opening and decoding the input; enc = writing "
        "the stems; other = wall minus those (Python start-up, imports, cross-fades, resampling); "
        "x realtime = song seconds / wall; peak RSS = VmHWM of the whole process."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

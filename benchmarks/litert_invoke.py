"""The LiteRT engine's inner loop: seconds per (condition, group) mask of one 10 s chunk, and peak memory,
for batch sizes, thread counts and model files; the figures behind `LiteRTEngine`'s choices.

Each configuration runs in a fresh process: the `masks` signature of a cunet `.tflite` on a random
magnitude of --frames frames (832: the default 10 s chunk at 44.1 kHz), --runs times after one warm-up;
reported: the median seconds per item (batch B counts as B items), the first run's seconds (the whole
batch: it includes preparing XNNPACK for the input's shape), and the process's peak RSS above the
interpreter's start. Configurations run interleaved, round after round, so a drifting background load
affects them alike.

    python benchmarks/litert_invoke.py            # shipped model: batch 1 vs 4, 1 vs 2 threads
    python benchmarks/litert_invoke.py --model a.tflite --model b.tflite --batch 1 --threads 2   # model files
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = """
import json, sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
path, batch, threads, frames, runs = sys.argv[1], *map(int, sys.argv[2:6])
def hwm():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
base = hwm()
runner = Interpreter(model_path=path, num_threads=threads).get_signature_runner("masks")
inputs = runner.get_input_details()
n_bins, n_channels = (int(d) for d in inputs["magnitude"]["shape_signature"][[1, 3]])
rng = np.random.default_rng(0)
feed = {"magnitude": (rng.uniform(0, 1, (batch, n_bins, frames, n_channels)) ** 4 * 10).astype(np.float32)}
if "condition" in inputs:
    n_inst = int(inputs["condition"]["shape_signature"][1])
    feed["condition"] = np.eye(n_inst, dtype=np.float32)[np.arange(batch) % n_inst]
times = []
for _ in range(runs + 1):
    start = time.perf_counter()
    runner(**feed)
    times.append(time.perf_counter() - start)
print(json.dumps({"per_item_s": [t / batch for t in times[1:]], "first_s": times[0], "peak_mib": hwm() - base}))
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        help="a cunet .tflite (repeatable; default: shipped)",
    )
    parser.add_argument("--batch", default="1,4", help="comma list of batch sizes (default: 1,4)")
    parser.add_argument(
        "--threads", default="1,2", help="comma list of thread counts (default: 1,2)"
    )
    parser.add_argument(
        "--frames", type=int, default=832, help="frames per item (default: 832, a 10 s chunk)"
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs per process (default: 5)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="fresh processes per configuration (default: 3)"
    )
    args = parser.parse_args(argv)
    models = [Path(m) for m in args.model] or [ROOT / "cunet" / "pretrained" / "default.tflite"]
    configs = [
        (m, int(b), int(t))
        for m in models
        for b in args.batch.split(",")
        for t in args.threads.split(",")
    ]
    results: dict[tuple, list[dict]] = {c: [] for c in configs}
    for _ in range(args.rounds):
        for model, batch, threads in configs:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    WORKER,
                    str(model),
                    str(batch),
                    str(threads),
                    str(args.frames),
                    str(args.runs),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            results[(model, batch, threads)].append(
                json.loads(proc.stdout.strip().splitlines()[-1])
            )
    print(f"{args.frames} frames per item, median over {args.rounds} processes x {args.runs} runs")
    print(
        f"{'model':32s} {'batch':>5s} {'threads':>7s} {'s/item':>7s} {'first s':>7s} {'peak MiB':>8s}"
    )
    for (model, batch, threads), runs in results.items():
        per_item = statistics.median(t for r in runs for t in r["per_item_s"])
        first = statistics.median(r["first_s"] for r in runs)
        peak = statistics.median(r["peak_mib"] for r in runs)
        print(f"{model.name:32s} {batch:5d} {threads:7d} {per_item:7.3f} {first:7.3f} {peak:8.0f}")
    print(
        "peak MiB: the process's peak resident memory above what it held before creating the interpreter"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Catalog throughput: `separate -r` against `cunet batch` (embedded Ray, 1 and 2 workers) and against a
two-node Ray cluster simulated on this machine, in audio-hours per wall-hour; the model's load time per
worker; and the resident memory of the driver and of each worker over a many-song manifest.

Every run is a fresh command-line process over the same synthesized songs (stereo 44.1 kHz, 16-bit WAV,
lengths drawn between --min-seconds and --max-seconds), timed from process start to exit: Python and
Ray start-up, model loading, decoding, separating and writing all count, as a user waits for them
("wall"). For `cunet batch` its report also gives "songs": from the first song's start to the last
one's end, without Ray's start and stop ("start+stop"). The simulated cluster is started before its
run is timed, as a real one would be running already.

    python benchmarks/batch_throughput.py                                   # 50 songs of 1-4 minutes
    python benchmarks/batch_throughput.py --songs 4 --max-seconds 90 --memory-songs 60   # a quick look
    python benchmarks/batch_throughput.py --runs separate,batch2 --model my.tflite -i vocals --repeats 3

Memory: --memory-songs short songs (--memory-seconds each) listed in a manifest go through
`cunet batch` with 2 workers; the driver's and each worker's resident memory (VmRSS, from /proc) is
sampled as the job goes, and printed when 10 %, 50 % and 90 % of the songs are done, with each process's
peak (VmHWM). Flat rows mean memory does not grow with the songs done.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
RATE = 44100
RUNS = ("separate", "batch1", "batch2", "cluster")
TITLES = {
    "separate": "separate -r (one song after another)",
    "batch1": "cunet batch, 1 worker x 2 threads",
    "batch2": "cunet batch, 2 workers x 1 thread",
    "cluster": "cunet batch --ray, 2 nodes x 1 CPU (simulated)",
}


def write_songs(folder: Path, n: int, low: float, high: float, seed: int = 0) -> float:
    """n songs (tone, noise bursts, bass) of uniform random lengths in [low, high] s; total seconds."""
    rng = np.random.default_rng(seed)
    total = 0.0
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        seconds = float(rng.uniform(low, high))
        t = np.arange(int(seconds * RATE)) / RATE
        f0 = 110.0 * (1 + i % 7)
        mono = 0.2 * np.sin(2 * np.pi * f0 * t) + 0.2 * np.sin(2 * np.pi * 55 * t)
        mono += 0.1 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0.9)
        sf.write(folder / f"song{i:04d}.wav", np.stack([mono, 0.8 * mono], 1), RATE, "PCM_16")
        total += t.size / RATE
    return total


def status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, MiB (empty once it is gone)."""
    found: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024
    return found


def workers() -> list[int]:
    """Process ids of the running batch workers (Ray names them ray::SongWorker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "cmdline").read_bytes().startswith(b"ray::SongWorker"):
                    found.append(int(entry.name))
    return found


def command(run: str, inputs: Sequence[str], out: Path, extra: Sequence[str]) -> list[str]:
    base = [sys.executable, "-m", "cunet"]
    if run == "separate":
        return [*base, "separate", *inputs, "-r", "-o", str(out), "-q", *extra]
    shape = {"batch1": ["--actors", "1", "--threads", "2"], "batch2": ["--actors", "2"]}
    return [*base, "batch", *inputs, "-r", "-o", str(out), "-q", *shape.get(run, []), *extra]


@contextlib.contextmanager
def two_nodes() -> Iterator[str]:
    """A head node and a worker node of 1 CPU each on this machine; yields the address to join."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        cluster.shutdown()


def timed(cmd: list[str], report: Path | None = None, marks: Sequence[int] = ()) -> dict:
    """Run cmd; its wall seconds, and memory samples {songs done: {pid: RSS MiB}} at the marks
    (songs done read from the report), with each process's peak."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples: dict[int, dict[str, float]] = {}
    peaks: dict[str, float] = {}
    while proc.poll() is None:
        if marks:
            done = report.read_text().count("\n") if report is not None and report.exists() else 0
            pids = {"driver": proc.pid, **{f"worker {p}": p for p in workers()}}
            now = {name: status(pid) for name, pid in pids.items()}
            for name, s in now.items():
                if "VmHWM" in s:
                    peaks[name] = max(peaks.get(name, 0.0), s["VmHWM"])
            for mark in marks:
                if done >= mark and mark not in samples:
                    samples[mark] = {n: s["VmRSS"] for n, s in now.items() if "VmRSS" in s}
        time.sleep(0.2)
    wall = time.perf_counter() - started
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    return {"wall": wall, "samples": samples, "peaks": peaks}


def songs_span(report: Path) -> float | None:
    """Seconds from the first song's start to the last song's end, from a batch report (None without
    one): the job less Ray's start, the model loading and the stop."""
    if not report.is_file():
        return None
    lines = [json.loads(x) for x in report.read_text().splitlines()]
    ends = [datetime.fromisoformat(r["finished"].replace("Z", "+00:00")).timestamp() for r in lines]
    starts = [end - r["seconds"] for end, r in zip(ends, lines, strict=True)]
    return max(ends) - min(starts) if lines else None


def load_times(model: str | None, n: int) -> list[float]:
    """Seconds each of n workers took to load the model (embedded Ray, as `cunet batch` starts them)."""
    import ray

    from cunet.batch.cluster import connected, start_workers
    from cunet.batch.worker import WorkerSettings

    with tempfile.TemporaryDirectory() as scratch, connected(None, n) as r:
        handles = start_workers(r, n, 1, WorkerSettings(scratch=scratch, model=model))
        described = ray.get([h.describe.remote() for h in handles])
        for h in handles:
            ray.kill(h)
    return [d["load_seconds"] for d in described]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--songs", type=int, default=50, help="songs per run (default: 50; 0: memory only)"
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs of each, interleaved")
    parser.add_argument("--min-seconds", type=float, default=60.0)
    parser.add_argument("--max-seconds", type=float, default=240.0)
    parser.add_argument("--runs", default=",".join(RUNS), help=f"of {', '.join(RUNS)}")
    parser.add_argument("-i", "--instrument", default="all")
    parser.add_argument("--model", default=None, help="default: the shipped model")
    parser.add_argument("--memory-songs", type=int, default=400, help="0: no memory run")
    parser.add_argument("--memory-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = sorted(set(runs) - set(RUNS))
    if unknown:
        parser.error(f"unknown runs {unknown}; choose from {', '.join(RUNS)}")
    extra = ["-i", args.instrument] + (["--model", args.model] if args.model else [])
    tmp = Path(tempfile.mkdtemp(prefix="cunet-batch-bench-"))
    try:
        if args.songs and runs:
            throughput(tmp, args, runs, extra)
        loads = load_times(args.model, 2)
        print(f"model load per worker: {', '.join(f'{s:.2f} s' for s in loads)}")
        if args.memory_songs:
            memory(tmp, args, extra)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def throughput(tmp: Path, args: argparse.Namespace, runs: list[str], extra: list[str]) -> None:
    """Each run --repeats times, interleaved (a drifting background load hits them alike); medians,
    and the range of the wall-clock figure."""
    audio = write_songs(tmp / "songs", args.songs, args.min_seconds, args.max_seconds)
    print(
        f"{args.songs} songs, {audio / 3600:.3f} h of audio ({args.min_seconds:g}-"
        f"{args.max_seconds:g} s each), -i {args.instrument}, {os.cpu_count()} CPUs, "
        f"medians of {args.repeats}"
    )
    walls: dict[str, list[float]] = {run: [] for run in runs}
    spans: dict[str, list[float]] = {run: [] for run in runs}
    for _ in range(args.repeats):
        for run in runs:
            out = tmp / f"out-{run}"
            if run == "cluster":
                with two_nodes() as address:
                    cmd = command(run, [str(tmp / "songs")], out, [*extra, "--ray", address])
                    walls[run].append(timed(cmd)["wall"])
            else:
                walls[run].append(timed(command(run, [str(tmp / "songs")], out, extra))["wall"])
            span = songs_span(out / "batch-report.jsonl")
            if span:
                spans[run].append(span)
            shutil.rmtree(out, ignore_errors=True)
    print(
        f"{'run':<46} {'wall s':>7} {'audio-h/h':>9} {'(range)':>11}   {'songs s':>7} "
        f"{'audio-h/h':>9} {'start+stop s':>12}"
    )
    for run in runs:
        wall = statistics.median(walls[run])
        rates = sorted(audio / w for w in walls[run])
        spread = f"{rates[0]:.1f}-{rates[-1]:.1f}"
        inner = f"{'-':>7} {'-':>9} {'-':>12}"
        if spans[run]:
            span = statistics.median(spans[run])
            inner = f"{span:>7.1f} {audio / span:>9.1f} {wall - span:>12.1f}"
        print(f"{TITLES[run]:<46} {wall:>7.1f} {audio / wall:>9.1f} {spread:>11}   {inner}")


def memory(tmp: Path, args: argparse.Namespace, extra: list[str]) -> None:
    n, seconds = args.memory_songs, args.memory_seconds
    write_songs(tmp / "many", n, seconds, seconds, seed=1)
    manifest = tmp / "many.txt"
    manifest.write_text("".join(f"many/song{i:04d}.wav\n" for i in range(n)))
    out = tmp / "out-memory"
    marks = [max(1, n // 10), max(1, n // 2), max(1, n * 9 // 10)]  # workers stop at 100 %
    cmd = [sys.executable, "-m", "cunet", "batch", "--manifest", str(manifest), "-o", str(out)]
    result = timed([*cmd, "-q", "--actors", "2", *extra], out / "batch-report.jsonl", marks)
    print(
        f"memory over a manifest of {n} songs of {seconds:g} s (RSS MiB when that many were done):"
    )
    names = sorted(result["peaks"], key=lambda name: (name != "driver", name))
    print(f"{'process':<16}" + "".join(f"{m:>10}" for m in marks) + f"{'peak':>10}")
    for name in names:
        row = [result["samples"].get(m, {}).get(name) for m in marks]
        cells = "".join(f"{v:>10.0f}" if v is not None else f"{'-':>10}" for v in row)
        print(f"{name:<16}{cells}{result['peaks'][name]:>10.0f}")
    lines = [json.loads(x) for x in (out / "batch-report.jsonl").read_text().splitlines()]
    print(f"  {sum(r['status'] == 'ok' for r in lines)} separated in {result['wall']:.1f} s")


if __name__ == "__main__":
    sys.exit(main())

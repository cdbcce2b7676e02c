"""Streaming latency and real-time factor: what `separate --stream` does, measured through the same code
(`cunet.live.stream_separate` over `Separator.stream`).

For a synthetic stereo 44.1 kHz signal of --seconds, with the model loaded once, each repeat measures:
- real-time factor (RTF): the whole signal handed over at once, wall seconds of the separation divided by
  the audio's seconds (below 1: keeps up with real time);
- latency: the signal handed over in blocks of --block samples at real-time pace (a block arrives when its
  last sample would have been recorded); for every written block, the seconds from the arrival of its
  first sample to the moment it was written out. The run's median and maximum are kept.
It prints medians over --repeats, the chunking the --latency setting chose and its bound
(`Separator.latency_seconds`: chunk + one hop), and whether the run kept up with real time (RTF < 1 and
the largest latency within the bound). With --quality it also compares the streamed stems with an offline
separation in the default 10 s chunks (signal-to-difference ratio in dB): what the short chunks cost.

    python benchmarks/stream_latency.py                          # shipped model, all four, ratio, 20 s, 3 runs
    python benchmarks/stream_latency.py --postprocess none -i vocals --seconds 10
    python benchmarks/stream_latency.py --model runs/default/best.keras --latency 3

Post-processing defaults to "ratio": it computes every instrument's mask per chunk whatever is asked for,
the costliest case (and the shipped model's default).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def synthetic(seconds: float, rate: int = 44100, seed: int = 0):
    """Stereo float32 [n, 2]: a vibrato voice, a bass line and noise bursts (as separate_speed.py writes)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    voice = 0.15 * np.sin(2 * np.pi * 330 * t + 2 * np.sin(2 * np.pi * 5 * t))
    bass = 0.15 * np.sin(2 * np.pi * 55 * t)
    drums = 0.15 * np.exp(-30 * ((t * 2) % 1.0)) * rng.standard_normal(len(t))
    return np.stack([voice * 0.7 + bass + drums, voice * 0.3 + bass + drums * 0.8], axis=1).astype(
        np.float32
    )


def paced(x, block: int, rate: int) -> Iterator:
    """Blocks of x, each handed over when its last sample would have been recorded."""
    start = time.perf_counter()
    for i in range(0, x.shape[0], block):
        delay = start + min(i + block, x.shape[0]) / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield x[i : i + block]


def run_once(separator, x, rate: int, names: Sequence[str] | None, block: int, pace: bool):
    """(stream report, wall seconds, output [n_instruments, n, 2])."""
    import numpy as np

    from cunet.live import read_ahead, stream_separate

    blocks = (
        paced(x, block, rate) if pace else (x[i : i + block] for i in range(0, x.shape[0], block))
    )
    outputs = []
    start = time.perf_counter()
    report = stream_separate(separator, read_ahead(blocks), rate, 2, names, outputs.append)
    return report, time.perf_counter() - start, np.concatenate(outputs, axis=1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default=None,
        help="a .tflite, .onnx or .keras file, run directory or export (default: the shipped .tflite)",
    )
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="length of the synthetic signal (default 20)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each measurement (default 3)"
    )
    parser.add_argument(
        "--latency", type=float, default=1.5, help="the --latency setting (default 1.5)"
    )
    parser.add_argument(
        "-i", "--instruments", default="all", help="comma list or all (default: all)"
    )
    parser.add_argument("--postprocess", default="ratio", choices=("none", "ratio", "wiener"))
    parser.add_argument(
        "--block", type=int, default=1024, help="input block in samples (default 1024)"
    )
    parser.add_argument(
        "--quality",
        action="store_true",
        help="also compare with an offline run in the default chunks",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    from cunet.separator import Separator

    start = time.perf_counter()
    separator = Separator.from_pretrained(
        args.model, latency=args.latency, postprocess=args.postprocess
    )
    load = time.perf_counter() - start
    names = None if args.instruments == "all" else args.instruments.split(",")
    names = separator.check_instruments(names)
    rate = separator.sample_rate
    x = synthetic(args.seconds, rate)
    hop = (separator.chunk - separator.overlap) / rate
    print(
        f"model: {args.model or 'shipped (cunet/pretrained/default.tflite, LiteRT)'}; loaded in {load:.1f} s; "
        f"instruments: {', '.join(names)}; postprocess: {args.postprocess}; cpus: {os.cpu_count()}; "
        f"load average: {', '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    print(
        f"--latency {args.latency:g}: chunk {separator.chunk / rate:.3f} s, "
        f"cross-fade {separator.overlap / rate:.3f} s, hop {hop:.3f} s; bound {separator.latency_seconds:.3f} s; "
        f"input blocks of {args.block} samples ({1000 * args.block / rate:.1f} ms); "
        f"{args.seconds:g} s of audio per run"
    )
    separator.warm_up(2, names)  # one-off graph tracing, not part of any measurement
    rtfs, chunk_ms, medians, maxima, behind = [], [], [], [], 0
    streamed = None
    for r in range(args.repeats):
        report, wall, _ = run_once(separator, x, rate, names, args.block, pace=False)
        rtfs.append(wall / args.seconds)
        chunk_ms.append(1000 * statistics.median(report.compute))
        report, _, streamed = run_once(separator, x, rate, names, args.block, pace=True)
        medians.append(statistics.median(report.latencies))
        maxima.append(max(report.latencies))
        behind += sum(c > hop for c in report.compute)
        print(
            f"run {r + 1}: RTF {rtfs[-1]:.3f}; {chunk_ms[-1]:.0f} ms per chunk; latency median {medians[-1]:.3f} s, "
            f"max {maxima[-1]:.3f} s; chunks later than one hop: {sum(c > hop for c in report.compute)}"
        )
    rtf, worst = statistics.median(rtfs), statistics.median(maxima)
    print(
        f"median of {args.repeats}: real-time factor {rtf:.3f} ({1 / rtf:.1f}x real time), "
        f"{statistics.median(chunk_ms):.0f} ms per chunk (due within {1000 * hop:.0f} ms), latency median "
        f"{statistics.median(medians):.3f} s, max {worst:.3f} s (bound {separator.latency_seconds:.3f} s)"
    )
    ok = rtf < 1 and worst <= separator.latency_seconds and behind == 0
    print(f"keeps up with real time: {'yes' if ok else 'NO'}")
    if args.quality and streamed is not None:
        offline = Separator(separator.engine, postprocess=args.postprocess).separate(x, rate, names)
        for i, name in enumerate(names):
            ref = offline[name]
            sdr = 10 * np.log10(np.sum(ref**2) / max(np.sum((streamed[i] - ref) ** 2), 1e-20))
            print(f"stream vs offline (default chunks), {name}: {sdr:.1f} dB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

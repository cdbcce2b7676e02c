"""What running the encoder once per chunk saves, for a model with FiLM only in the decoder.

With `model.film_placement: decoder` the encoder does not depend on the instrument, so the four masks
of a chunk share one encoder pass: E + 4 D instead of 4 (E + D). The script exports the model as
`cunet export --format tflite` does (float32) and times `LiteRTEngine.masks` on one chunk (the default
10 s) for all four instruments, both ways, interleaved: through the `encode` and `decode` signatures
(what the engine does for such a model) and through the whole network per instrument (what it does for
any other). Medians of --rounds x --runs calls after a warm-up. Weights do not change the timing, so
a config (random weights) serves as well as a trained model.

    python benchmarks/encode_once.py --config configs/ablations/a9_decoder_film.yaml
    python benchmarks/encode_once.py --model ~/.cache/cunet-runs/a9_decoder_film --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cunet.config import load_config
from cunet.engines.litert import load_tflite
from cunet.engines.loading import load_keras_model, resolve_model_path
from cunet.export.tflite import export_tflite
from cunet.nn.models import build_model
from cunet.provenance import make_provenance


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="a model config (random weights)")
    source.add_argument("--model", help="a trained model: .keras file or run directory")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT threads (default: 2)")
    parser.add_argument("--runs", type=int, default=5, help="timed calls per round (default: 5)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: 5)")
    args = parser.parse_args(argv)
    if args.config:
        config = load_config(args.config)
        model, record = build_model(config), make_provenance(config.to_dict())
    else:
        model, config, record = load_keras_model(resolve_model_path(args.model))
    if not config.model.shares_encoder:
        print(
            "error: the encoder depends on the instrument unless FiLM is only in the decoder "
            f"(this model: film_placement={config.model.film_placement})",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        path = export_tflite(model, config, record, Path(tmp) / "model.tflite")
        engine = load_tflite(path, num_threads=args.threads)[0]
    a, n = config.audio, len(config.model.instruments)
    rng = np.random.default_rng(0)
    shape = (1, a.n_bins, engine.chunk_frames, a.n_channels)
    magnitude = (rng.uniform(0, 1, shape) ** 4 * 10).astype(np.float32)
    conditions = np.eye(n, dtype=np.float32)
    ways = {"encoder once": True, "whole network": False}
    times: dict[str, list[float]] = {way: [] for way in ways}
    for once in ways.values():  # warm-up: XNNPACK prepares each signature's shapes
        engine.encodes_once = once
        engine.masks(magnitude, conditions)
    for _ in range(args.rounds):
        for way, once in ways.items():
            engine.encodes_once = once
            for _ in range(args.runs):
                start = time.perf_counter()
                engine.masks(magnitude, conditions)
                times[way].append(time.perf_counter() - start)
    medians = {way: statistics.median(t) for way, t in times.items()}
    print(
        f"one chunk of {engine.chunk_frames} frames, {n} instruments, {args.threads} threads, "
        f"median of {args.rounds} x {args.runs} calls"
    )
    for way, seconds in medians.items():
        print(f"{way:16s} {seconds:.4f} s")
    print(f"ratio            {medians['encoder once'] / medians['whole network']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

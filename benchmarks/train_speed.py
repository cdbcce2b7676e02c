"""Input-pipeline throughput versus training throughput (patches per second).

The input pipeline (`cunet.data.train_dataset` over an on-disk STFT cache:
memory-mapped reads, remixing, gains, channel swaps, magnitudes) must keep
the model fed: this script measures it alone, then the model's training
steps alone (`SeparationTrainer.fit` with the config's objective on one batch
held in memory, so no input work is counted), and prints both and their
ratio, which should be at least 5. A patch is one (mixture, condition) pair
the network sees: `train.batch_size` per step (in joint training, batch_size /
n_instruments mixtures, each with every condition).

    python benchmarks/train_speed.py                                  # default config, ../shared MUSDB18
    python benchmarks/train_speed.py --data ~/stems --data ../mir1k,stem=vocals   # any `cunet train --data`
    python benchmarks/train_speed.py --config configs/tiny.yaml --synthetic --steps 10 --repeats 2

Figures are medians over --repeats; every repeat times --steps batches after
a warm-up (tracing, first reads).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MUSDB = ROOT.parent / "shared" / "data" / "musdb18-7"


def synthetic_tracks(
    n_tracks: int,
    seconds: float,
    sample_rate: int,
    n_channels: int,
    instruments: Sequence[str],
    seed: int = 0,
) -> list[Any]:
    """In-memory tracks of one synthetic source (`cunet.data.Track`, readers return noise-like stems)."""
    import numpy as np

    from cunet.data import Track

    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    tracks = []
    for i in range(n_tracks):
        stems = {}
        for j, name in enumerate(instruments):
            tone = np.sin(2 * np.pi * (55.0 * (j + 1) * (1 + 0.05 * i)) * t)
            audio = (0.1 * tone[:, None] + 0.02 * rng.standard_normal((n, n_channels))).astype(
                np.float32
            )
            stems[name] = lambda audio=audio: (audio, sample_rate)
        tracks.append(Track(f"synthetic-{i:02d}", "synthetic", stems))
    return tracks


def cached_training_tracks(
    args: argparse.Namespace, config: Any, cache_dir: Path
) -> tuple[list[Any], str]:
    """The cached training tracks and a description of where they came from."""
    from cunet.data import build_cache, open_sources, parse_data_spec

    if args.synthetic:
        tracks = synthetic_tracks(
            args.synthetic_tracks,
            args.synthetic_seconds,
            config.audio.sample_rate,
            config.audio.n_channels,
            config.model.instruments,
        )
        source = f"synthetic ({args.synthetic_tracks} tracks x {args.synthetic_seconds:g} s)"
    else:
        texts = args.data or [args.musdb_root]
        specs = [parse_data_spec(text, is_wav=args.is_wav) for text in texts]
        tracks = open_sources(specs, config.train.seed)["train"][: args.track_limit]
        source = f"train split of {', '.join(texts)} ({len(tracks)} tracks)"
    started = time.perf_counter()
    cached = build_cache(tracks, cache_dir, config.audio, progress=False)
    print(f"cache ready in {time.perf_counter() - started:.1f} s ({cache_dir})", flush=True)
    return cached, source


def make_sampler(tracks: Sequence[Any], config: Any) -> Any:
    """The PatchSampler `cunet train` would use for `config`."""
    from cunet.data import PatchSampler

    t = config.train
    instruments = config.model.instruments
    fixed = None if config.model.kind == "conditioned" else instruments.index(config.model.target)
    return PatchSampler(
        tracks,
        config.model.n_frames,
        t,
        instruments,
        config.audio.n_bins,
        config.audio.n_channels,
        t.seed,
        fixed,
        joint=t.joint,
        with_complex=t.sdr_loss_weight > 0,
    )


def pipeline_throughput(
    sampler: Any, config: Any, steps: int, warmup: int, first_index: int
) -> float:
    """Patches per second drawn from the tf.data training pipeline alone."""
    from cunet.data import train_dataset

    batch = config.train.batch_size
    ds = train_dataset(sampler, batch // sampler.n_targets, first_index=first_index)
    iterator = iter(ds)
    for _ in range(warmup):
        next(iterator)
    started = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return steps * batch / (time.perf_counter() - started)


class _StepTimer:
    """Keras callback timing training batches from the end of the first to the end of the last."""

    def __init__(self) -> None:
        import keras

        class Timer(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.marks: list[float] = []

            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                self.marks.append(time.perf_counter())

        self.callback = Timer()

    def patches_per_second(self, batch_size: int) -> float:
        marks = self.callback.marks
        return (len(marks) - 1) * batch_size / (marks[-1] - marks[0])


def training_throughput(
    config: Any,
    sampler: Any,
    steps: int,
    warmup: int,
    repeats: int,
    dtype_policy: str = "float32",
) -> list[float]:
    """Patches per second of training steps (the config's objective) on one in-memory batch, per repeat.

    dtype_policy: the Keras dtype policy the model is built under ("mixed_bfloat16": bfloat16
    compute, float32 weights)."""
    import keras
    import tensorflow as tf

    from cunet.data import split_inputs_targets
    from cunet.nn.models import build_model
    from cunet.training.loop import select_strategy
    from cunet.training.trainer import SeparationTrainer

    batch = config.train.batch_size
    inputs, targets = split_inputs_targets(sampler.batch(0, batch // sampler.n_targets))
    ds = tf.data.Dataset.from_tensors((inputs, targets)).repeat()
    keras.utils.set_random_seed(config.train.seed)
    keras.config.set_dtype_policy(dtype_policy)  # this process builds one model: a global is fine
    with select_strategy().scope():
        model = SeparationTrainer(build_model(config), config)
        model.compile(optimizer=keras.optimizers.Adam(config.train.learning_rate))
    model.fit(ds, epochs=1, steps_per_epoch=max(2, warmup), verbose=0)  # trace and warm up
    rates = []
    for _ in range(repeats):
        timer = _StepTimer()
        model.fit(ds, epochs=1, steps_per_epoch=steps + 1, verbose=0, callbacks=[timer.callback])
        rates.append(timer.patches_per_second(batch))
    return rates


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", default=str(ROOT / "configs" / "default.yaml"), help="YAML config"
    )
    parser.add_argument(
        "--musdb-root", default=str(DEFAULT_MUSDB), help="MUSDB18 root (default: %(default)s)"
    )
    parser.add_argument("--is-wav", action="store_true", help="MUSDB18 in the wav layout")
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="SPEC",
        help="data sources as `cunet train --data` takes them, repeatable (instead of --musdb-root)",
    )
    parser.add_argument(
        "--track-limit", type=int, default=None, help="use only the first N training tracks"
    )
    parser.add_argument(
        "--synthetic", action="store_true", help="synthesize a small cache instead of MUSDB18"
    )
    parser.add_argument("--synthetic-tracks", type=int, default=8, help="tracks with --synthetic")
    parser.add_argument(
        "--synthetic-seconds", type=float, default=10.0, help="track length with --synthetic"
    )
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="STFT cache (default: ~/.cache/cunet, a temporary folder with --synthetic)",
    )
    parser.add_argument(
        "--dtype-policy",
        default="float32",
        choices=("float32", "mixed_bfloat16"),
        help="Keras dtype policy of the trained model (default float32)",
    )
    parser.add_argument("--steps", type=int, default=30, help="timed batches per repeat")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches before timing")
    parser.add_argument("--repeats", type=int, default=3, help="repeats; medians are reported")
    parser.add_argument(
        "--min-ratio", type=float, default=5.0, help="required pipeline/training ratio"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 if the ratio is below --min-ratio"
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", message=".*shuffle=True.*")
    from cunet.config import load_config
    from cunet.training.loop import default_cache_dir

    config = load_config(args.config)
    with tempfile.TemporaryDirectory(prefix="cunet-bench-") as tmp:
        if args.cache_dir:
            cache_dir = Path(args.cache_dir)
        else:
            cache_dir = Path(tmp) / "cache" if args.synthetic else default_cache_dir()
        tracks, source = cached_training_tracks(args, config, cache_dir)
        sampler = make_sampler(tracks, config)
        pipeline = [
            pipeline_throughput(sampler, config, args.steps, args.warmup, first_index=r * 100_000)
            for r in range(args.repeats)
        ]
        training = training_throughput(
            config, sampler, args.steps, args.warmup, args.repeats, args.dtype_policy
        )

    pipe, fit = statistics.median(pipeline), statistics.median(training)
    ratio = pipe / fit
    print(
        f"config:   {config.name} ({args.config}); batch {config.train.batch_size} x "
        f"{config.audio.n_bins} bins x {config.model.n_frames} frames x {config.audio.n_channels} ch"
    )
    print(f"data:     {source}; dtype policy {args.dtype_policy}")
    print(
        f"timing:   median of {args.repeats} repeats x {args.steps} batches, {os.cpu_count()} CPUs"
    )
    print(
        f"input pipeline:  {pipe:10.1f} patches/s   (repeats: {', '.join(f'{v:.1f}' for v in pipeline)})"
    )
    print(
        f"training (fit):  {fit:10.1f} patches/s   (repeats: {', '.join(f'{v:.1f}' for v in training)})"
    )
    verdict = "OK" if ratio >= args.min_ratio else "TOO LOW"
    print(f"ratio pipeline/training: {ratio:.1f}x (required >= {args.min_ratio:g}x: {verdict})")
    return 1 if args.strict and ratio < args.min_ratio else 0


if __name__ == "__main__":
    sys.exit(main())

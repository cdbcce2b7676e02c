"""Scoring many tracks, in parallel worker processes ('spawn' context, safe with TensorFlow)."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from ..workers import bounded_workers, cpu_count, sigint_deferred, terminate_workers
from .runner import EvaluationSettings, SeparateFn, TrackResult, failure_message, score_one_track
from .tracks import EvalTrack


@dataclass
class Failure:
    track: str
    method: str  # "load", a method name, or "worker" when the worker process died
    message: str


@dataclass
class Evaluation:
    """All scores of a run.

    scores: long DataFrame in museval's MethodStore layout, one row per frame and
        metric: columns time (s), target, metric, score (dB, NaN for silent frames),
        track, method.
    skipped: (track, reason) for tracks that were not scored although nothing failed.
    """

    settings: EvaluationSettings
    methods: tuple[str, ...]
    scores: Any
    failures: list[Failure]
    n_tracks: int
    seconds: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)


# Per-worker-process state, set once by the pool initializer (each worker is its
# own process, so nothing is shared); the parent process never touches it.
_WORKER: dict[str, Any] = {}


def _init_worker(
    settings: EvaluationSettings, factory: Callable[[], SeparateFn] | None, threads: int
) -> None:
    limit_threads(threads)
    _WORKER["settings"] = settings
    _WORKER["separate_fn"] = factory() if factory is not None else None


def _score_in_worker(track: EvalTrack) -> TrackResult:
    return score_one_track(track, _WORKER["settings"], _WORKER["separate_fn"])


def limit_threads(n: int) -> None:
    """Cap this process's compute threads (BLAS/OpenMP, and TensorFlow if imported after this) to n."""
    n = max(1, int(n))
    for var in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "TF_NUM_INTRAOP_THREADS",
    ):
        os.environ[var] = str(n)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    try:  # BLAS pools are already loaded with numpy; threadpoolctl resizes them at run time.
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n)
    except ImportError:
        pass


def evaluate_tracks(
    tracks: Sequence[EvalTrack],
    settings: EvaluationSettings,
    separate_factory: Callable[[], SeparateFn] | None = None,
    jobs: int = 1,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> Evaluation:
    """Score every track with the model (if `separate_factory`) and the baselines.

    separate_factory: builds a `SeparateFn`; called once per worker process (once
        in this process when jobs == 1). With jobs > 1 it must be picklable
        (a module-level function or functools.partial of one), and so must the tracks.
    jobs: worker processes ('spawn' context), at most one per CPU and per track
        (`cunet.workers.bounded_workers`); each caps its threads to cpus // workers.
    progress: tqdm bar on stderr. log: called with one line per failure as it happens.
    A failing track (or method) is recorded in `failures`; the others are still scored.
    """
    import pandas as pd

    if jobs < 1:
        raise ValueError("jobs must be >= 1")
    methods = settings.methods(separate_factory is not None)
    if not methods:
        raise ValueError("nothing to evaluate: no model and no baseline")
    start = time.perf_counter()
    results: list[TrackResult] = []
    failures: list[Failure] = []
    skipped: list[tuple[str, str]] = []
    from tqdm import tqdm

    bar = tqdm(
        total=len(tracks), desc="evaluating", unit="track", file=sys.stderr, disable=not progress
    )

    def collect(result: TrackResult) -> None:
        results.append(result)
        if result.skipped:
            skipped.append((result.track, result.skipped))
        for method, message in result.errors.items():
            failures.append(Failure(result.track, method, message))
            if log is not None:
                log(f"{result.track}: {method} failed: {message}")
        bar.set_postfix(failed=len({f.track for f in failures}), refresh=False)
        bar.update(1)

    workers = bounded_workers(jobs, len(tracks))[0]
    try:
        if workers == 1:
            separate_fn = separate_factory() if separate_factory is not None else None
            for track in tracks:
                collect(score_one_track(track, settings, separate_fn))
        else:
            threads = max(1, cpu_count() // workers)
            # 'spawn': fresh interpreters, safe with TensorFlow and with threads in this process.
            pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(settings, separate_factory, threads),
            )
            finished = False
            try:
                with sigint_deferred():  # the workers start here, and never see Ctrl-C
                    futures = {pool.submit(_score_in_worker, track): track for track in tracks}
                for future in as_completed(futures):
                    name = str(getattr(futures[future], "name", futures[future]))
                    try:
                        collect(future.result())
                    except BrokenProcessPool:
                        collect(
                            TrackResult(
                                name,
                                errors={
                                    "worker": "the worker process died "
                                    "(out of memory?) or could not start"
                                },
                            )
                        )
                    except Exception as exc:  # noqa: BLE001 - e.g. a track that cannot be pickled
                        collect(TrackResult(name, errors={"worker": failure_message(exc)}))
                finished = True
            finally:
                # On Ctrl-C (or any error here) stop the workers instead of waiting for their tracks.
                if finished:
                    pool.shutdown(wait=True)
                else:
                    terminate_workers(pool)
    finally:
        bar.close()

    frames = [
        _json_to_frame(text, r.track, method) for r in results for method, text in r.scores.items()
    ]
    scores = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["time", "target", "metric", "score", "track", "method"])
    )
    order = {t.name if hasattr(t, "name") else str(t): i for i, t in enumerate(tracks)}
    failures.sort(key=lambda f: (order.get(f.track, len(order)), f.method))
    skipped.sort(key=lambda s: order.get(s[0], len(order)))
    return Evaluation(
        settings, methods, scores, failures, len(tracks), time.perf_counter() - start, skipped
    )


def _json_to_frame(text: str, track: str, method: str) -> Any:
    import museval
    import simplejson

    frame = museval.json2df(simplejson.loads(text, allow_nan=True), track)
    frame["score"] = frame["score"].astype(float)
    frame["method"] = method
    return frame

"""Evaluation on MUSDB18 with museval, reported the SiSEC way.

Protocols
---------
"musdb" (SiSEC 2018): every track is scored at its own rate and channel count
    with BSSEval v4 (`museval.evaluate`: distortion filters fitted on the whole
    track, metrics on 1 s windows with 1 s hops). The instruments are scored
    jointly, exactly as `museval.eval_mus_track` does. When only some
    instruments are scored, the sum of the others is added as one more
    reference (and the method's complement as its estimate), so the references
    always add up to the mixture; such scores are not comparable with SiSEC's
    four-instrument ones (SIR is measured against a different interference set).
"paper": as the original C-U-Net code (gabolsgabs/cunet, evaluation/results.py):
    mixture and stems down-mixed to mono and resampled to 8192 Hz; each
    instrument j is scored on its own as a two-source problem
    [s_j, sum_{k != j} s_k] against [estimate_j, complement_j] with BSSEval v3
    `bss_eval_sources` on the whole track (one "frame"; ISR is undefined: NaN).
    Differences from the original, on purpose: references are the stems
    themselves (not an STFT/iSTFT round trip of them), and estimates are not
    min-max rescaled to the reference's range (that used the reference; BSSEval
    sources scores are gain-invariant anyway).

Scores are stored per track in museval's JSON format (`museval.TrackStore`,
validated against museval's `musdb.schema.json`), one folder per method:
`out/<method>/<subset>/<track>.json`, which `museval.EvalStore.add_eval_dir`
and `museval.MethodStore.add_eval_dir` read (they look for `test/`).
Aggregation is museval's: median over frames, then median over tracks.

Methods: the model (any `separate_fn(mixture, rate) -> {instrument: estimate}`)
and the baselines "mixture" (the mixture as every estimate) and the oracle
masks "IRM1" (magnitude ratio), "IRM2" (power ratio) and "IBM" (binary), as in
sigsep's oracle methods, all scored on the same tracks by the same scorer.

Tracks are scored in parallel worker processes ('spawn' context, safe with
TensorFlow); the model is built once per worker by a picklable factory.
"""
from __future__ import annotations

import functools
import json
import math
import multiprocessing
import os
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from .config import INSTRUMENTS

METRICS: tuple[str, ...] = ("SDR", "SIR", "ISR", "SAR")
BASELINES: tuple[str, ...] = ("mixture", "IRM1", "IRM2", "IBM")
ORACLES: dict[str, float] = {"IRM1": 1.0, "IRM2": 2.0}  # ratio masks: exponent of |STFT|
PROTOCOLS: tuple[str, ...] = ("musdb", "paper")
PAPER_SAMPLE_RATE = 8192  # Hz, the original C-U-Net's analysis rate
WINDOW_SECONDS = 1.0  # SiSEC 2018 BSSEval v4 window and hop
HOP_SECONDS = 1.0
# Oracle STFT (n_fft, hop) per protocol: sigsep-style at 44.1 kHz; the paper's own STFT at 8192 Hz.
ORACLE_STFT: dict[str, tuple[int, int]] = {"musdb": (4096, 1024), "paper": (1024, 256)}
_EPS = float(np.finfo(np.float64).eps)  # keeps masks finite where every source is silent

SeparateFn = Callable[[np.ndarray, int], Mapping[str, np.ndarray]]
"""separate_fn(mixture [n_samples, n_channels] float32 at rate Hz, rate) -> {instrument: estimate of the same shape}."""


# -- tracks -------------------------------------------------------------------------------------------


@dataclass
class TrackAudio:
    """Decoded audio of one track.

    mixture: float32 [n_samples, n_channels] at `rate` Hz.
    stems: {instrument: float32 [n_samples, n_channels]}: every true source
        (all of INSTRUMENTS, whichever are scored), summing to about the mixture.
    """

    mixture: np.ndarray
    stems: dict[str, np.ndarray]
    rate: int


class EvalTrack(Protocol):
    """What the evaluation needs from a track: a name, a subset and its decoded audio."""

    name: str
    subset: str

    def load(self) -> TrackAudio: ...


@dataclass
class ArrayTrack:
    """A track held in memory (tests, custom data). Arrays as in `TrackAudio`."""

    name: str
    mixture: np.ndarray
    stems: dict[str, np.ndarray]
    rate: int
    subset: str = "test"

    def load(self) -> TrackAudio:
        return TrackAudio(_as_2d(self.mixture), {k: _as_2d(v) for k, v in self.stems.items()}, int(self.rate))


class MusdbTrack:
    """A `musdb` track, decoded on `load()` (in the worker that scores it).

    The musdb Track object is picklable; decoding happens once per track: all
    streams of a .stem.mp4 with a single ffmpeg call.
    """

    def __init__(self, track: Any) -> None:
        self.track = track
        self.name: str = track.name
        self.subset: str = track.subset

    def load(self) -> TrackAudio:
        t = self.track
        missing = [name for name in INSTRUMENTS if name not in t.targets]
        if missing:
            raise ValueError(f"track has no '{missing[0]}' stem")
        if t.is_wav:
            mixture = np.asarray(t.audio, np.float32)
            stems = {name: np.asarray(t.targets[name].audio, np.float32) for name in INSTRUMENTS}
        else:
            streams = t.stems  # [n_streams, n_samples, n_channels], indexed by stem id
            mixture = np.asarray(streams[t.stem_id], np.float32)
            stems = {name: np.asarray(sum(src.gain * streams[src.stem_id] for src in t.targets[name].sources),
                                      np.float32) for name in INSTRUMENTS}
        return TrackAudio(mixture, stems, int(t.rate))

    def __repr__(self) -> str:
        return f"MusdbTrack({self.name!r}, subset={self.subset!r})"


def open_musdb_tracks(root: str | os.PathLike, subsets: str = "test", split: str | None = None,
                      is_wav: bool = False, track_limit: int | None = None) -> list[MusdbTrack]:
    """The MUSDB18 tracks of one subset ("train" or "test"); `split` ("train"/"valid") only with "train".

    Raises FileNotFoundError when `root` is not a directory, ValueError on bad arguments.
    """
    from .data import open_musdb

    if subsets not in ("train", "test"):
        raise ValueError(f"subsets must be 'train' or 'test', got {subsets!r}")
    if split is not None and subsets != "train":
        raise ValueError("a split (train/valid) only applies to the train subset")
    try:
        listed = open_musdb(root, subsets=subsets, split=split, is_wav=is_wav)
    except FileNotFoundError:
        raise
    except Exception as exc:  # musdb probes every file while listing: one bad file stops it
        bad = _unreadable_files(Path(root) / subsets, is_wav)
        if bad:
            raise ValueError(f"cannot read {len(bad)} MUSDB18 file(s), e.g. '{bad[0]}' "
                             "(ffprobe failed); fix or remove them") from None
        raise ValueError(f"cannot list MUSDB18 tracks under '{root}': {_one_line(exc)}") from None
    tracks = [MusdbTrack(t) for t in listed]
    return tracks[:track_limit] if track_limit is not None else tracks


def _unreadable_files(folder: Path, is_wav: bool) -> list[str]:
    """Files musdb would probe under one subset folder that ffprobe cannot read."""
    import stempeg

    paths = sorted(folder.glob("*/mixture.wav") if is_wav else folder.glob("*.stem.mp4"))
    bad = []
    for path in paths:
        try:
            stempeg.Info(str(path))
        except Exception:  # noqa: BLE001 - whatever ffprobe's wrapper raises
            bad.append(str(path))
    return bad


# -- protocols and scoring -------------------------------------------------------------------------------


def to_paper_domain(audio: np.ndarray, rate: int) -> np.ndarray:
    """Down-mix to mono and resample to 8192 Hz, as the original C-U-Net pre-processing did.

    audio: float [n_samples, n_channels] at `rate` Hz -> float32 [n_samples', 1] at 8192 Hz.
    """
    mono = np.asarray(audio, np.float32).mean(axis=1, keepdims=True)
    if rate == PAPER_SAMPLE_RATE:
        return mono
    import soxr

    return np.asarray(soxr.resample(mono, rate, PAPER_SAMPLE_RATE, quality="HQ"), np.float32).reshape(-1, 1)


def conform_to_protocol(audio: TrackAudio, protocol: str) -> TrackAudio:
    """The signals the protocol scores: unchanged for "musdb", 8192 Hz mono for "paper"."""
    _check_protocol(protocol)
    if protocol == "musdb":
        return audio
    return TrackAudio(to_paper_domain(audio.mixture, audio.rate),
                      {k: to_paper_domain(v, audio.rate) for k, v in audio.stems.items()}, PAPER_SAMPLE_RATE)


def score_track(mixture: np.ndarray, stems: Mapping[str, np.ndarray], estimates: Mapping[str, np.ndarray],
                rate: int, track_name: str, protocol: str = "musdb", instruments: Sequence[str] | None = None,
                complement: str = "residual") -> Any:
    """Score one track's estimates; returns a validated `museval.TrackStore`.

    mixture: float [n_samples, n_channels] at `rate` Hz (already in the protocol's domain).
    stems: every true source {name: [n_samples, n_channels]}, not only the scored ones.
    estimates: {name: [m, n_channels]} for at least `instruments` (default: all of
        `estimates`); padded/truncated to n_samples as museval does.
    complement: how the method's estimate of "everything else" is formed when the
        protocol needs one: "residual" (mixture minus the estimates, as the original
        C-U-Net code did) or "mixture" (the mixture itself, for the mixture baseline).
    """
    import museval

    _check_protocol(protocol)
    if complement not in ("residual", "mixture"):
        raise ValueError(f"complement must be 'residual' or 'mixture', got {complement!r}")
    names = list(dict.fromkeys(instruments if instruments is not None else estimates))
    missing = [n for n in names if n not in estimates or n not in stems]
    if missing:
        raise ValueError(f"no estimate or reference for '{missing[0]}'")
    mixture = _as_2d(mixture)
    n_samples, n_channels = mixture.shape
    refs = {k: _fit(v, n_samples, n_channels, f"stem '{k}'") for k, v in stems.items()}
    ests = {k: _fit(estimates[k], n_samples, n_channels, f"estimate '{k}'") for k in names}

    def complement_of(group: Sequence[str]) -> np.ndarray:
        if complement == "mixture":
            return mixture
        return mixture - np.sum([ests[k] for k in group], axis=0)

    if protocol == "musdb":
        store = museval.TrackStore(track_name=track_name, win=WINDOW_SECONDS, hop=HOP_SECONDS)
        others = [k for k in refs if k not in names]
        ref_list, est_list = [refs[k] for k in names], [ests[k] for k in names]
        if others:
            ref_list.append(np.sum([refs[k] for k in others], axis=0))
            est_list.append(complement_of(names))
        if len(ref_list) < 2:
            raise ValueError("BSSEval needs at least two sources (give every stem in `stems`)")
        sdr, isr, sir, sar = museval.evaluate(ref_list, est_list, win=int(WINDOW_SECONDS * rate),
                                              hop=int(HOP_SECONDS * rate), mode="v4")
        for i, name in enumerate(names):
            store.add_target(name, {"SDR": sdr[i].tolist(), "SIR": sir[i].tolist(),
                                    "ISR": isr[i].tolist(), "SAR": sar[i].tolist()})
    else:
        from museval.metrics import bss_eval_sources

        duration = n_samples / rate
        store = museval.TrackStore(track_name=track_name, win=duration, hop=duration)
        for name in names:
            rest = [k for k in refs if k != name]
            if not rest:
                raise ValueError("the paper protocol needs the other stems to form the accompaniment")
            ref_pair = np.stack([refs[name], np.sum([refs[k] for k in rest], axis=0)])
            est_pair = np.stack([ests[name], complement_of([name])])
            sdr, sir, sar, _ = bss_eval_sources(ref_pair, est_pair, compute_permutation=False)
            store.add_target(name, {"SDR": [float(sdr[0, 0])], "SIR": [float(sir[0, 0])],
                                    "ISR": [math.nan], "SAR": [float(sar[0, 0])]})
    store.validate()
    return store


# -- baselines --------------------------------------------------------------------------------------------


def oracle_estimates(mixture: np.ndarray, stems: Mapping[str, np.ndarray],
                     methods: Sequence[str] = ("IRM1", "IRM2", "IBM"), targets: Sequence[str] | None = None,
                     n_fft: int = 4096, hop: int = 1024, theta: float = 0.5) -> dict[str, dict[str, np.ndarray]]:
    """Oracle time-frequency masks from the true stems, applied to the mixture STFT per channel.

    mixture: float [n_samples, n_channels]; stems: every true source {name: [n_samples, n_channels]}.
    IRM1: |S_j| / sum_k |S_k|; IRM2: |S_j|^2 / sum_k |S_k|^2 (sums over all stems);
    IBM: 1 where |S_j| / |X| >= theta (the source makes at least half the mixture's
    magnitude, sigsep's "majority vote" with theta = 0.5), else 0.
    STFT: Hann window of n_fft samples, hop samples (scipy.signal.stft/istft).
    Returns {method: {target: float32 [n_samples, n_channels]}} (same length as the mixture).
    """
    from scipy.signal import istft, stft

    unknown = [m for m in methods if m not in ORACLES and m != "IBM"]
    if unknown:
        raise ValueError(f"unknown oracle '{unknown[0]}' (valid: IRM1, IRM2, IBM)")
    if not 0 < hop <= n_fft:
        raise ValueError("oracle STFT hop must be in (0, n_fft]")
    mixture = _as_2d(mixture)
    n_samples, n_channels = mixture.shape
    targets = list(targets if targets is not None else stems)
    out = {m: {t: np.zeros((n_samples, n_channels), np.float32) for t in targets} for m in methods}
    spec = functools.partial(stft, nperseg=n_fft, noverlap=n_fft - hop, window="hann")
    inverse = functools.partial(istft, nperseg=n_fft, noverlap=n_fft - hop, window="hann")
    # Channel by channel, so a long track needs one channel's spectrograms at a time.
    for c in range(n_channels):
        x = spec(mixture[:, c])[-1]
        mags = {k: np.abs(spec(_fit(v, n_samples, n_channels, f"stem '{k}'")[:, c])[-1]) for k, v in stems.items()}
        for method in methods:
            if method == "IBM":
                x_mag = np.abs(x) + _EPS
                masks = {t: (mags[t] / x_mag >= theta).astype(np.float32) for t in targets}
            else:
                alpha = ORACLES[method]
                total = _EPS + np.sum([m**alpha for m in mags.values()], axis=0)
                masks = {t: (mags[t] ** alpha / total).astype(np.float32) for t in targets}
            for t in targets:
                y = np.asarray(inverse(x * masks[t])[-1], np.float32)
                out[method][t][: min(n_samples, y.size), c] = y[:n_samples]
    return out


# -- one track ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluationSettings:
    """What to score and where to write it (picklable, sent to every worker).

    out_dir: results folder; per-track JSON go to out_dir/<method>/<subset>/<track>.json.
    protocol: "musdb" or "paper". instruments: the instruments scored.
    baselines: subset of BASELINES. model_name: method name of the model's scores.
    oracle_stft: (n_fft, hop) in samples for the oracle masks; None: ORACLE_STFT[protocol].
    """

    out_dir: Path
    protocol: str = "musdb"
    instruments: tuple[str, ...] = INSTRUMENTS
    baselines: tuple[str, ...] = ()
    model_name: str = "cunet"
    oracle_stft: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        _check_protocol(self.protocol)
        bad = [b for b in self.baselines if b not in BASELINES]
        if bad:
            raise ValueError(f"unknown baseline '{bad[0]}' (valid: {', '.join(BASELINES)})")
        bad = [i for i in self.instruments if i not in INSTRUMENTS]
        if bad or not self.instruments:
            raise ValueError(f"unknown instrument '{bad[0] if bad else ''}' (valid: {', '.join(INSTRUMENTS)})")
        if self.model_name in BASELINES or not self.model_name or "/" in self.model_name:
            raise ValueError(f"invalid model method name {self.model_name!r} (must differ from the baselines)")

    @property
    def stft(self) -> tuple[int, int]:
        return self.oracle_stft or ORACLE_STFT[self.protocol]

    def methods(self, with_model: bool) -> tuple[str, ...]:
        return ((self.model_name,) if with_model else ()) + tuple(self.baselines)


@dataclass
class TrackResult:
    """Outcome for one track: museval JSON per scored method, and one-line errors per failed one
    ("load" when the track itself could not be read)."""

    track: str
    scores: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def score_one_track(track: EvalTrack, settings: EvaluationSettings, separate_fn: SeparateFn | None = None
                    ) -> TrackResult:
    """Decode, separate (model and baselines) and score one track, writing its JSON files.

    Never raises for a bad track or method: failures are returned in `errors`.
    """
    start = time.perf_counter()
    result = TrackResult(track=str(getattr(track, "name", track)))
    try:
        audio = conform_to_protocol(track.load(), settings.protocol)
    except Exception as exc:  # noqa: BLE001 - any failure is reported, the other tracks go on
        result.errors["load"] = _one_line(exc)
        result.seconds = time.perf_counter() - start
        return result
    targets = list(settings.instruments)

    def run(method: str, make: Callable[[], Mapping[str, np.ndarray]], complement: str) -> None:
        try:
            estimates = make()
            store = score_track(audio.mixture, audio.stems, estimates, audio.rate, result.track,
                                protocol=settings.protocol, instruments=targets, complement=complement)
            text = store.json
            _write_text(Path(settings.out_dir) / method / track.subset / f"{result.track}.json", text)
            result.scores[method] = text
        except Exception as exc:  # noqa: BLE001
            result.errors[method] = _one_line(exc)

    if separate_fn is not None:
        def separated() -> Mapping[str, np.ndarray]:
            est = separate_fn(audio.mixture, audio.rate)
            missing = [t for t in targets if t not in est]
            if missing:
                raise ValueError(f"the model returned no '{missing[0]}' estimate")
            return {t: est[t] for t in targets}

        run(settings.model_name, separated, "residual")
    n_fft, hop = settings.stft
    for baseline in settings.baselines:
        if baseline == "mixture":
            run("mixture", lambda: {t: audio.mixture for t in targets}, "mixture")
        else:  # one oracle at a time: recomputing the stems' STFTs is cheap next to BSSEval, and saves memory
            run(baseline, lambda b=baseline: oracle_estimates(audio.mixture, audio.stems, [b], targets,
                                                              n_fft=n_fft, hop=hop)[b], "residual")
    result.seconds = time.perf_counter() - start
    return result


# -- many tracks, in parallel -------------------------------------------------------------------------------


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
    """

    settings: EvaluationSettings
    methods: tuple[str, ...]
    scores: Any
    failures: list[Failure]
    n_tracks: int
    seconds: float = 0.0


# Per-worker-process state, set once by the pool initializer (each worker is its
# own process, so nothing is shared); the parent process never touches it.
_WORKER: dict[str, Any] = {}


def _init_worker(settings: EvaluationSettings, factory: Callable[[], SeparateFn] | None, threads: int) -> None:
    limit_threads(threads)
    _WORKER["settings"] = settings
    _WORKER["separate_fn"] = factory() if factory is not None else None


def _score_in_worker(track: EvalTrack) -> TrackResult:
    return score_one_track(track, _WORKER["settings"], _WORKER["separate_fn"])


def limit_threads(n: int) -> None:
    """Cap this process's compute threads (BLAS/OpenMP, and TensorFlow if imported after this) to n."""
    n = max(1, int(n))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ[var] = str(n)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    try:  # BLAS pools are already loaded with numpy; threadpoolctl resizes them at run time.
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n)
    except ImportError:
        pass


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def evaluate_tracks(tracks: Sequence[EvalTrack], settings: EvaluationSettings,
                    separate_factory: Callable[[], SeparateFn] | None = None, jobs: int = 1,
                    progress: bool = False, log: Callable[[str], None] | None = None) -> Evaluation:
    """Score every track with the model (if `separate_factory`) and the baselines.

    separate_factory: builds a `SeparateFn`; called once per worker process (once
        in this process when jobs == 1). With jobs > 1 it must be picklable
        (a module-level function or functools.partial of one), and so must the tracks.
    jobs: worker processes ('spawn' context); each caps its threads to cpus // jobs.
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
    from tqdm import tqdm

    bar = tqdm(total=len(tracks), desc="evaluating", unit="track", file=sys.stderr, disable=not progress)

    def collect(result: TrackResult) -> None:
        results.append(result)
        for method, message in result.errors.items():
            failures.append(Failure(result.track, method, message))
            if log is not None:
                log(f"{result.track}: {method} failed: {message}")
        bar.set_postfix(failed=len({f.track for f in failures}), refresh=False)
        bar.update(1)

    try:
        if jobs == 1 or len(tracks) <= 1:
            separate_fn = separate_factory() if separate_factory is not None else None
            for track in tracks:
                collect(score_one_track(track, settings, separate_fn))
        else:
            workers = min(jobs, len(tracks))
            threads = max(1, available_cpus() // workers)
            # 'spawn': fresh interpreters, safe with TensorFlow and with threads in this process.
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker, initargs=(settings, separate_factory, threads))
            finished = False
            try:
                futures = {pool.submit(_score_in_worker, track): track for track in tracks}
                for future in as_completed(futures):
                    name = str(getattr(futures[future], "name", futures[future]))
                    try:
                        collect(future.result())
                    except BrokenProcessPool:
                        collect(TrackResult(name, errors={"worker": "the worker process died "
                                                          "(out of memory?) or could not start"}))
                    except Exception as exc:  # noqa: BLE001 - e.g. a track that cannot be pickled
                        collect(TrackResult(name, errors={"worker": _one_line(exc)}))
                finished = True
            finally:
                # On Ctrl-C (or any error here) drop the queued tracks instead of waiting for them.
                pool.shutdown(wait=finished, cancel_futures=not finished)
    finally:
        bar.close()

    frames = [_json_to_frame(text, r.track, method) for r in results for method, text in r.scores.items()]
    scores = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["time", "target", "metric", "score", "track", "method"])
    order = {t.name if hasattr(t, "name") else str(t): i for i, t in enumerate(tracks)}
    failures.sort(key=lambda f: (order.get(f.track, len(order)), f.method))
    return Evaluation(settings, methods, scores, failures, len(tracks), time.perf_counter() - start)


def model_separate_fn(model: str | os.PathLike | None, instruments: Sequence[str],
                      tf_threads: int | None = None) -> SeparateFn:
    """Factory for the package's model: load `cunet.separator.Separator` once, return its separate_fn.

    model: .keras file, run directory, SavedModel export, or None for the shipped model.
    Picklable as functools.partial(model_separate_fn, path, instruments, threads).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if tf_threads:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(tf_threads))
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TensorFlow already initialised in this process: keep its pools
            pass
    from .separator import Separator

    separator = Separator.from_pretrained(model)
    names = tuple(instruments)

    def separate(mixture: np.ndarray, rate: int) -> dict[str, np.ndarray]:
        return separator.separate(mixture, rate, instruments=names, progress=False)

    return separate


# -- aggregation and reports -------------------------------------------------------------------------------


def track_scores(scores: Any, frames_agg: str = "median") -> Any:
    """Per-track scores: DataFrame [method, track, target] x METRICS, frames aggregated (NaN frames skipped)."""
    import museval

    store = museval.MethodStore(frames_agg=frames_agg)
    store.df = scores
    return store.agg_frames_scores().unstack("metric").reindex(columns=list(METRICS))


def aggregate_scores(scores: Any, frames_agg: str = "median", tracks_agg: str = "median",
                     methods: Sequence[str] | None = None, targets: Sequence[str] | None = None) -> Any:
    """SiSEC aggregate: frames aggregated per track, then tracks, per method, target and metric.

    scores: long DataFrame (see `Evaluation.scores`). frames_agg / tracks_agg:
    "median" (SiSEC) or "mean". Returns a DataFrame indexed by (method, target)
    with columns METRICS, in dB, ordered by `methods` and `targets` when given.
    """
    import museval

    store = museval.MethodStore(frames_agg=frames_agg, tracks_agg=tracks_agg)
    store.df = scores
    table = store.agg_frames_tracks_scores().unstack("metric").reindex(columns=list(METRICS))
    return _reorder(table, methods, targets)


def markdown_table(table: Any, metric: str, methods: Sequence[str], targets: Sequence[str]) -> str:
    """One metric as a markdown table: a row per method, a column per target, dB with 2 decimals."""
    lines = ["| method | " + " | ".join(targets) + " |", "|---|" + "---:|" * len(targets)]
    for method in methods:
        cells = []
        for target in targets:
            value = table[metric].get((method, target), math.nan) if metric in table else math.nan
            cells.append("–" if value is None or not np.isfinite(value) else f"{value:.2f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe_protocol(protocol: str) -> str:
    _check_protocol(protocol)
    if protocol == "musdb":
        return (f"museval BSSEval v4 (images), {WINDOW_SECONDS:g} s windows and {HOP_SECONDS:g} s hops "
                "at the tracks' own rate and channels (SiSEC 2018)")
    return (f"original C-U-Net protocol: mono, {PAPER_SAMPLE_RATE} Hz, whole-track BSSEval v3 "
            "bss_eval_sources per instrument against the sum of the other stems (ISR undefined)")


def write_reports(evaluation: Evaluation, extra: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write the aggregate table (markdown, CSV), per-track CSV, SDR boxplot, museval
    MethodStore pickle, settings and failures into settings.out_dir.

    Returns {kind: path} of the files written. Per-track JSON were written while scoring.
    """
    settings = evaluation.settings
    out = Path(settings.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    targets = list(settings.instruments)
    methods = [m for m in evaluation.methods if (evaluation.scores["method"] == m).any()]
    n_scored = evaluation.scores["track"].nunique()
    written: dict[str, Path] = {}

    record = {
        "protocol": settings.protocol, "protocol_description": describe_protocol(settings.protocol),
        "instruments": targets, "methods": list(evaluation.methods), "oracle_stft": list(settings.stft),
        "n_tracks": evaluation.n_tracks, "n_tracks_scored": int(n_scored), "seconds": round(evaluation.seconds, 1),
        "failures": [vars(f) for f in evaluation.failures], "versions": _versions(), **dict(extra or {}),
    }
    written["settings"] = _write_text(out / "settings.json", json.dumps(record, indent=2, default=str) + "\n")
    failures_path = out / "failures.tsv"
    if evaluation.failures:
        lines = ["track\tmethod\tmessage"] + [f"{f.track}\t{f.method}\t{f.message}" for f in evaluation.failures]
        written["failures"] = _write_text(failures_path, "\n".join(lines) + "\n")
    elif failures_path.exists():
        failures_path.unlink()  # stale from an earlier run into the same folder
    if evaluation.scores.empty:
        return written

    import museval

    store = museval.MethodStore()
    store.df = evaluation.scores
    written["methodstore"] = out / "methodstore.pandas"
    store.save(str(written["methodstore"]))

    per_track = track_scores(evaluation.scores)
    rows = per_track.reset_index()
    rank = {name: i for i, name in enumerate([*methods, *targets])}  # report order, not alphabetical
    rows = rows.sort_values(["method", "track", "target"], kind="stable",
                            key=lambda col: col.map(rank) if col.name != "track" else col)
    rows.to_csv(out / "track_scores.csv", index=False, float_format="%.5f")
    written["track_scores"] = out / "track_scores.csv"

    tables = {"median": aggregate_scores(evaluation.scores, "median", "median", methods, targets)}
    if settings.protocol == "paper":  # the original code reported means over tracks
        tables["mean"] = aggregate_scores(evaluation.scores, "median", "mean", methods, targets)
    for agg, table in tables.items():
        suffix = "" if agg == "median" else f"_{agg}"
        table.reset_index().to_csv(out / f"aggregate{suffix}.csv", index=False, float_format="%.5f")
        written[f"aggregate{suffix}_csv"] = out / f"aggregate{suffix}.csv"
        per = "one whole-track score per track" if settings.protocol == "paper" else "median over frames"
        parts = [f"# Evaluation ({settings.protocol} protocol)", "",
                 f"Scorer: {describe_protocol(settings.protocol)}.",
                 f"Aggregation: {per}, then {agg} over {n_scored} tracks; values in dB.", ""]
        if evaluation.failures:
            parts += [f"Failures: {len(evaluation.failures)} (see failures.tsv).", ""]
        for metric in METRICS:
            if settings.protocol == "paper" and metric == "ISR":
                continue
            parts += [f"## {metric}", "", markdown_table(table, metric, methods, targets), ""]
        written[f"aggregate{suffix}_md"] = _write_text(out / f"aggregate{suffix}.md", "\n".join(parts))

    written["boxplot"] = plot_boxplot(per_track, out / "boxplot_sdr.png", methods, targets, metric="SDR")
    return written


def plot_boxplot(per_track: Any, path: str | os.PathLike, methods: Sequence[str], targets: Sequence[str],
                 metric: str = "SDR") -> Path:
    """Boxplot PNG of per-track `metric` (dB): one panel per target, one box per method.

    per_track: output of `track_scores`. Uses the Agg canvas directly (no pyplot,
    no global backend switch), so it works without a display.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.0 + len(targets) * (0.5 * len(methods) + 0.6), 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(targets), sharey=True, squeeze=False)[0]
    frame = per_track[metric].reset_index()
    for ax, target in zip(axes, targets):
        data = []
        for method in methods:
            values = frame[(frame["method"] == method) & (frame["target"] == target)][metric].to_numpy(float)
            data.append(values[np.isfinite(values)])
        ax.boxplot(data, showmeans=False, medianprops={"color": "black"})
        ax.set_xticks(range(1, len(methods) + 1), list(methods), rotation=45, ha="right")
        ax.set_title(target)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(f"{metric} (dB), per track")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fig.savefig(tmp, dpi=110, format="png")
    os.replace(tmp, path)
    return path


# -- helpers ------------------------------------------------------------------------------------------------


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r} (valid: {', '.join(PROTOCOLS)})")


def _as_2d(audio: np.ndarray) -> np.ndarray:
    """float32 [n_samples, n_channels] (a 1-D signal becomes one channel)."""
    audio = np.asarray(audio, np.float32)
    return audio[:, None] if audio.ndim == 1 else audio


def _fit(audio: np.ndarray, n_samples: int, n_channels: int, what: str) -> np.ndarray:
    """Pad with zeros / truncate to n_samples (as museval does); channels must match."""
    audio = _as_2d(audio)
    if audio.ndim != 2 or audio.shape[1] != n_channels:
        raise ValueError(f"{what} has shape {audio.shape}, expected [n_samples, {n_channels}]")
    if audio.shape[0] > n_samples:
        return audio[:n_samples]
    if audio.shape[0] < n_samples:
        return np.pad(audio, [(0, n_samples - audio.shape[0]), (0, 0)])
    return audio


def _reorder(table: Any, methods: Sequence[str] | None, targets: Sequence[str] | None) -> Any:
    import pandas as pd

    have_m = list(dict.fromkeys(table.index.get_level_values(0)))
    have_t = list(dict.fromkeys(table.index.get_level_values(1)))
    m_order = [m for m in (methods or []) if m in have_m] + [m for m in have_m if m not in (methods or [])]
    t_order = [t for t in (targets or []) if t in have_t] + [t for t in have_t if t not in (targets or [])]
    index = pd.MultiIndex.from_tuples([(m, t) for m in m_order for t in t_order if (m, t) in table.index],
                                      names=["method", "target"])
    return table.reindex(index)


def _json_to_frame(text: str, track: str, method: str) -> Any:
    import museval
    import simplejson

    frame = museval.json2df(simplejson.loads(text, allow_nan=True), track)
    frame["score"] = frame["score"].astype(float)
    frame["method"] = method
    return frame


def _write_text(path: Path, text: str) -> Path:
    """Write atomically (temp file + rename) so an interrupted run leaves no half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
    where = traceback.extract_tb(exc.__traceback__)
    if where:  # the innermost frame locates bugs without a full traceback
        message += f" (at {Path(where[-1].filename).name}:{where[-1].lineno})"
    return message[:400]


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for name in ("cunet", "museval", "musdb", "numpy", "scipy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    if versions.get("cunet") is None:
        from . import __version__

        versions["cunet"] = __version__
    return versions

"""Scoring one track: decode it, separate it with the model and the baselines, score, write its JSON."""
from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..atomic import write_text_atomic
from ..config import INSTRUMENTS
from ..tflog import import_tensorflow
from .oracle import BASELINES, ORACLE_STFT, oracle_estimates
from .scoring import check_protocol, conform_to_protocol, score_track
from .tracks import EvalTrack

SeparateFn = Callable[[np.ndarray, int], Mapping[str, np.ndarray]]
"""separate_fn(mixture [n_samples, n_channels] float32 at rate Hz, rate) -> {instrument: estimate of the same shape}."""


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
        check_protocol(self.protocol)
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
        result.errors["load"] = failure_message(exc)
        result.seconds = time.perf_counter() - start
        return result
    targets = list(settings.instruments)

    def run(method: str, make: Callable[[], Mapping[str, np.ndarray]], complement: str) -> None:
        try:
            estimates = make()
            store = score_track(audio.mixture, audio.stems, estimates, audio.rate, result.track,
                                protocol=settings.protocol, instruments=targets, complement=complement)
            text = store.json
            write_text_atomic(Path(settings.out_dir) / method / track.subset / f"{result.track}.json", text)
            result.scores[method] = text
        except Exception as exc:  # noqa: BLE001
            result.errors[method] = failure_message(exc)

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


def model_separate_fn(model: str | os.PathLike | None, instruments: Sequence[str],
                      tf_threads: int | None = None, postprocess: Any = None) -> SeparateFn:
    """Factory for the package's model: load `cunet.separator.Separator` once, return its separate_fn.

    model: .keras file, run directory, SavedModel export, or None for the shipped model.
    postprocess: as for `Separator` (None: the model's own).
    Picklable as functools.partial(model_separate_fn, path, instruments, threads, postprocess).
    """
    if tf_threads:
        tf = import_tensorflow()
        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(tf_threads))
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TensorFlow already initialised in this process: keep its pools
            pass
    from ..separator import Separator

    separator = Separator.from_pretrained(model, postprocess=postprocess)
    names = tuple(instruments)

    def separate(mixture: np.ndarray, rate: int) -> dict[str, np.ndarray]:
        return separator.separate(mixture, rate, instruments=names, progress=False)

    return separate


def failure_message(exc: BaseException) -> str:
    """One line for a failed track or method: type, first line of the message, innermost source line."""
    text = str(exc).strip().splitlines()
    message = f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
    where = traceback.extract_tb(exc.__traceback__)
    if where:  # the innermost frame locates bugs without a full traceback
        message += f" (at {Path(where[-1].filename).name}:{where[-1].lineno})"
    return message[:400]

"""Scoring one track: decode it, separate it with the model and the baselines, score, write its JSON."""

from __future__ import annotations

import functools
import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import INSTRUMENTS
from ..io.atomic import write_text_atomic
from ..separator import Separator
from ..tflog import import_tensorflow, native_stderr_muted, probe_devices
from .oracle import BASELINES, ORACLE_STFT, oracle_estimates
from .scoring import check_protocol, conform_to_protocol, score_track
from .tracks import EvalTrack, TrackAudio

SeparateFn = Callable[[np.ndarray, int], Mapping[str, np.ndarray]]
"""separate_fn(mixture [n_samples, n_channels] float32 at rate Hz, rate) -> {instrument: estimate of the same shape}."""


@dataclass(frozen=True)
class EvaluationSettings:
    """What to score and where to write it (picklable, sent to every worker).

    out_dir: results folder; per-track JSON go to out_dir/<method>/<subset>/<track>.json.
    protocol: "musdb" or "paper". instruments: the reference stems scored (any names); a track is
        scored for those it holds.
    baselines: subset of BASELINES. model_name: method name of the model's scores.
    oracle_stft: (n_fft, hop) in samples for the oracle masks; None: ORACLE_STFT[protocol].
    estimate_from: ((reference, model output), ...): the model output that estimates a reference
        stem when it is not the output of the same name (`--map`, see `cunet.evaluate.targets`).
    """

    out_dir: Path
    protocol: str = "musdb"
    instruments: tuple[str, ...] = INSTRUMENTS
    baselines: tuple[str, ...] = ()
    model_name: str = "cunet"
    oracle_stft: tuple[int, int] | None = None
    estimate_from: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        check_protocol(self.protocol)
        bad = [b for b in self.baselines if b not in BASELINES]
        if bad:
            raise ValueError(f"unknown baseline '{bad[0]}' (valid: {', '.join(BASELINES)})")
        names = list(self.instruments)
        if (
            not names
            or len(set(names)) != len(names)
            or not all(isinstance(n, str) and n for n in names)
        ):
            raise ValueError(f"instruments must be distinct non-empty names, got {names}")
        references = [r for r, _ in self.estimate_from]
        if len(set(references)) != len(references) or not all(
            r and o for r, o in self.estimate_from
        ):
            raise ValueError(
                f"estimate_from must map each reference to one output, got {self.estimate_from}"
            )
        if self.model_name in BASELINES or not self.model_name or "/" in self.model_name:
            raise ValueError(
                f"invalid model method name {self.model_name!r} (must differ from the baselines)"
            )

    @property
    def stft(self) -> tuple[int, int]:
        return self.oracle_stft or ORACLE_STFT[self.protocol]

    def output_for(self, instrument: str) -> str:
        """The model output that estimates reference stem `instrument` (itself unless mapped)."""
        return dict(self.estimate_from).get(instrument, instrument)

    @property
    def model_outputs(self) -> tuple[str, ...]:
        """The model outputs the scored instruments need, without duplicates."""
        return tuple(dict.fromkeys(self.output_for(i) for i in self.instruments))

    def methods(self, with_model: bool) -> tuple[str, ...]:
        return ((self.model_name,) if with_model else ()) + tuple(self.baselines)


@dataclass
class TrackResult:
    """Outcome for one track: museval JSON per scored method, and one-line errors per failed one
    ("load" when the track itself could not be read); `skipped` says why a track was not scored
    although nothing failed (it holds none of the scored stems, or only silent ones)."""

    track: str
    scores: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: str = ""


def score_one_track(
    track: EvalTrack, settings: EvaluationSettings, separate_fn: SeparateFn | None = None
) -> TrackResult:
    """Decode, separate (model and baselines) and score one track, writing its JSON files.

    A track is scored for the scored stems it holds that are not silent (all zeros); one with none
    is skipped (`TrackResult.skipped`), without decoding when its `stem_names` tell.
    Never raises for a bad track or method: failures are returned in `errors`.
    """
    start = time.perf_counter()
    result = TrackResult(track=str(getattr(track, "name", track)))
    scored = ", ".join(settings.instruments)
    if not set(getattr(track, "stem_names", settings.instruments)) & set(settings.instruments):
        result.skipped = f"holds none of the scored stems ({scored})"
        return result
    try:
        loaded = track.load()
        audio = conform_to_protocol(loaded.without_silent_stems(), settings.protocol)
    except Exception as exc:  # noqa: BLE001 - any failure is reported, the other tracks go on
        result.errors["load"] = failure_message(exc)
        result.seconds = time.perf_counter() - start
        return result
    targets = [t for t in settings.instruments if t in audio.stems]
    if not targets:
        silent = [t for t in settings.instruments if t in loaded.stems]
        result.skipped = (
            f"its scored stems are silent ({', '.join(silent)})"
            if silent
            else f"holds none of the scored stems ({scored})"
        )
        result.seconds = time.perf_counter() - start
        return result

    def run(method: str, make: Callable[[], Mapping[str, np.ndarray]], complement: str) -> None:
        try:
            estimates = make()
            store = score_track(
                audio.mixture,
                audio.stems,
                estimates,
                audio.rate,
                result.track,
                protocol=settings.protocol,
                instruments=targets,
                complement=complement,
            )
            text = store.json
            write_text_atomic(
                Path(settings.out_dir) / method / track.subset / f"{result.track}.json", text
            )
            result.scores[method] = text
        except Exception as exc:  # noqa: BLE001
            result.errors[method] = failure_message(exc)

    if separate_fn is not None:

        def separated() -> Mapping[str, np.ndarray]:
            est = separate_fn(audio.mixture, audio.rate)
            missing = [settings.output_for(t) for t in targets if settings.output_for(t) not in est]
            if missing:
                raise ValueError(f"the model returned no '{missing[0]}' estimate")
            return {t: est[settings.output_for(t)] for t in targets}

        run(settings.model_name, separated, "residual")
    n_fft, hop = settings.stft
    for baseline in settings.baselines:
        if baseline == "mixture":
            run("mixture", lambda: {t: audio.mixture for t in targets}, "mixture")
        else:  # one oracle at a time: recomputing the stems' STFTs is cheap next to BSSEval, and saves memory
            run(
                baseline,
                functools.partial(_oracle, audio, baseline, targets, n_fft, hop),
                "residual",
            )
    result.seconds = time.perf_counter() - start
    return result


def model_separate_fn(
    model: str | os.PathLike | None,
    instruments: Sequence[str],
    tf_threads: int | None = None,
    postprocess: Any = None,
    shifts: int = 1,
) -> SeparateFn:
    """Factory for the package's model: load `cunet.separator.Separator` once, return its separate_fn.

    model: .keras file, run directory, SavedModel export, or None for the shipped model.
    instruments: the model outputs to separate (`EvaluationSettings.model_outputs`).
    postprocess, shifts: as for `Separator` (postprocess None: the model's own).
    Picklable as functools.partial(model_separate_fn, path, instruments, threads, postprocess, shifts).
    """
    tf = import_tensorflow(muted=True)  # a worker process: no start-up lines on the user's terminal
    if tf_threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(tf_threads))
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TensorFlow already initialised in this process: keep its pools
            pass
    with native_stderr_muted():
        separator = Separator.from_pretrained(model, postprocess=postprocess, shifts=shifts)
    probe_devices()
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


def _oracle(
    audio: TrackAudio, baseline: str, targets: Sequence[str], n_fft: int, hop: int
) -> dict[str, np.ndarray]:
    """One oracle's estimates (recomputing the stems' STFTs is cheap next to BSSEval; saves memory)."""
    return oracle_estimates(audio.mixture, audio.stems, [baseline], targets, n_fft=n_fft, hop=hop)[
        baseline
    ]

"""Evaluation on MUSDB18 or any training data source with museval, reported the SiSEC way.

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

Data: MUSDB18 (`open_musdb_tracks`, the test or train subset) or any source `cunet train --data`
accepts (`open_data_tracks`: MUSDB18 roots and folder datasets, any stems, the same train/valid
splits and seeded hold-out as training). A track is scored for the stems it holds.

Methods: the model (any `separate_fn(mixture, rate) -> {instrument: estimate}`; by default a
reference stem is estimated by the model output of the same name, `targets.resolve_targets` and
`EvaluationSettings.estimate_from` let another output estimate it, e.g. `guitar` from `other`)
and the baselines "mixture" (the mixture as every estimate) and the oracle
masks "IRM1" (magnitude ratio), "IRM2" (power ratio) and "IBM" (binary), as in
sigsep's oracle methods, all scored on the same tracks by the same scorer.

Tracks are scored in parallel worker processes ('spawn' context, safe with
TensorFlow); the model is built once per worker by a picklable factory.

Modules, one concern each: `tracks` (decoded audio of MUSDB18 or in-memory
tracks), `datasets` (tracks of training data sources), `targets` (which stems are scored, and by
which model output), `scoring` (protocols and the museval scorer), `oracle` (oracle mask
baselines), `runner` (one track: separate, score, write its JSON), `pool`
(many tracks in worker processes), `reports` (aggregation, tables, plot).
"""

from __future__ import annotations

from ..workers import cpu_count as available_cpus
from .datasets import DataTrack, describe_tracks, open_data_tracks, stem_union
from .oracle import BASELINES, ORACLE_STFT, ORACLES, oracle_estimates
from .pool import Evaluation, Failure, evaluate_tracks, limit_threads
from .reports import (
    aggregate_scores,
    markdown_table,
    plot_boxplot,
    read_aggregate,
    read_track_scores,
    track_scores,
    write_reports,
)
from .runner import EvaluationSettings, SeparateFn, TrackResult, model_separate_fn, score_one_track
from .scoring import (
    HOP_SECONDS,
    METRICS,
    PAPER_SAMPLE_RATE,
    PROTOCOLS,
    WINDOW_SECONDS,
    conform_to_protocol,
    describe_protocol,
    score_track,
    to_paper_domain,
)
from .targets import parse_map, resolve_targets
from .tracks import ArrayTrack, EvalTrack, MusdbTrack, TrackAudio, open_musdb_tracks

__all__ = [
    "ArrayTrack",
    "BASELINES",
    "DataTrack",
    "EvalTrack",
    "Evaluation",
    "EvaluationSettings",
    "Failure",
    "HOP_SECONDS",
    "METRICS",
    "MusdbTrack",
    "ORACLES",
    "ORACLE_STFT",
    "PAPER_SAMPLE_RATE",
    "PROTOCOLS",
    "SeparateFn",
    "TrackAudio",
    "TrackResult",
    "WINDOW_SECONDS",
    "aggregate_scores",
    "available_cpus",
    "conform_to_protocol",
    "describe_protocol",
    "describe_tracks",
    "evaluate_tracks",
    "limit_threads",
    "markdown_table",
    "model_separate_fn",
    "open_data_tracks",
    "open_musdb_tracks",
    "oracle_estimates",
    "parse_map",
    "plot_boxplot",
    "read_aggregate",
    "read_track_scores",
    "resolve_targets",
    "score_one_track",
    "score_track",
    "stem_union",
    "to_paper_domain",
    "track_scores",
    "write_reports",
]

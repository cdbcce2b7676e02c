"""Aggregation (museval's: median over frames, then over tracks) and the report files and plot."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_path, write_text_atomic
from ..provenance import package_versions
from .pool import Evaluation
from .scoring import METRICS, describe_protocol

REPORT_PACKAGES = ("cunet", "museval", "musdb", "numpy", "scipy")


def track_scores(scores: Any, frames_agg: str = "median") -> Any:
    """Per-track scores: DataFrame [method, track, target] x METRICS, frames aggregated (NaN frames skipped)."""
    import museval

    store = museval.MethodStore(frames_agg=frames_agg)
    store.df = scores
    return store.agg_frames_scores().unstack("metric").reindex(columns=list(METRICS))


def aggregate_scores(
    scores: Any,
    frames_agg: str = "median",
    tracks_agg: str = "median",
    methods: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
) -> Any:
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


def oracle_share(
    table: Any, method: str, target: str, oracle: str = "IRM1", floor: str = "mixture"
) -> float:
    """(method - floor) / (oracle - floor) of the aggregate SDR: the share of the oracle's gain over the
    mixture-as-estimate baseline that `method` achieves (1.0 = as good as the oracle); NaN if missing."""
    sdr = table["SDR"] if "SDR" in table else {}
    values = [sdr.get((m, target), math.nan) for m in (method, oracle, floor)]
    if not all(np.isfinite(v) for v in values) or values[1] <= values[2]:
        return math.nan
    return (values[0] - values[2]) / (values[1] - values[2])


def oracle_share_section(table: Any, methods: Sequence[str], targets: Sequence[str]) -> list[str]:
    """Markdown lines: each method's share of the IRM1 gain over the mixture, per target (needs both
    baselines in the table; else no lines)."""
    have = set(table.index.get_level_values(0)) if len(table) else set()
    if not {"IRM1", "mixture"} <= have:
        return []
    rows = [m for m in methods if m not in ("IRM1", "mixture")]
    lines = [
        "### Share of the IRM1 gain over the mixture (SDR)",
        "",
        "| method | " + " | ".join(targets) + " |",
        "|---|" + "---:|" * len(targets),
    ]
    for method in rows:
        cells = [oracle_share(table, method, t) for t in targets]
        lines.append(
            f"| {method} | "
            + " | ".join("–" if not np.isfinite(c) else f"{100 * c:.0f}%" for c in cells)
            + " |"
        )
    return [*lines, ""]


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


def write_reports(
    evaluation: Evaluation, extra: Mapping[str, Any] | None = None
) -> dict[str, Path]:
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
        "protocol": settings.protocol,
        "protocol_description": describe_protocol(settings.protocol),
        "instruments": targets,
        "methods": list(evaluation.methods),
        "oracle_stft": list(settings.stft),
        "estimate_from": {t: settings.output_for(t) for t in targets}
        if settings.model_name in evaluation.methods
        else {},
        "n_tracks": evaluation.n_tracks,
        "n_tracks_scored": int(n_scored),
        "seconds": round(evaluation.seconds, 1),
        "failures": [vars(f) for f in evaluation.failures],
        "skipped": [{"track": t, "reason": r} for t, r in evaluation.skipped],
        "versions": package_versions(REPORT_PACKAGES),
        **dict(extra or {}),
    }
    written["settings"] = write_text_atomic(
        out / "settings.json", json.dumps(record, indent=2, default=str) + "\n"
    )
    failures_path = out / "failures.tsv"
    if evaluation.failures:
        lines = ["track\tmethod\tmessage"] + [
            f"{f.track}\t{f.method}\t{f.message}" for f in evaluation.failures
        ]
        written["failures"] = write_text_atomic(failures_path, "\n".join(lines) + "\n")
    elif failures_path.exists():
        failures_path.unlink()  # stale from an earlier run into the same folder
    if evaluation.scores.empty:
        return written

    import museval

    store = museval.MethodStore()
    store.df = evaluation.scores
    written["methodstore"] = out / "methodstore.pandas"
    with atomic_path(written["methodstore"]) as tmp:
        store.save(str(tmp))

    per_track = track_scores(evaluation.scores)
    rows = per_track.reset_index()
    rank = {
        name: i for i, name in enumerate([*methods, *targets])
    }  # report order, not alphabetical
    rows = rows.sort_values(
        ["method", "track", "target"],
        kind="stable",
        key=lambda col: col.map(rank) if col.name != "track" else col,
    )
    with atomic_path(out / "track_scores.csv") as tmp:
        rows.to_csv(tmp, index=False, float_format="%.5f")
    written["track_scores"] = out / "track_scores.csv"

    tables = {"median": aggregate_scores(evaluation.scores, "median", "median", methods, targets)}
    if settings.protocol == "paper":  # the original code reported means over tracks
        tables["mean"] = aggregate_scores(evaluation.scores, "median", "mean", methods, targets)
    for agg, table in tables.items():
        suffix = "" if agg == "median" else f"_{agg}"
        with atomic_path(out / f"aggregate{suffix}.csv") as tmp:
            table.reset_index().to_csv(tmp, index=False, float_format="%.5f")
        written[f"aggregate{suffix}_csv"] = out / f"aggregate{suffix}.csv"
        per = (
            "one whole-track score per track"
            if settings.protocol == "paper"
            else "median over frames"
        )
        parts = [
            f"# Evaluation ({settings.protocol} protocol)",
            "",
            f"Scorer: {describe_protocol(settings.protocol)}.",
            f"Aggregation: {per}, then {agg} over {n_scored} tracks; values in dB.",
            "",
        ]
        parts += header_notes(evaluation, targets, int(n_scored))
        for metric in METRICS:
            if settings.protocol == "paper" and metric == "ISR":
                continue
            parts += [f"## {metric}", "", markdown_table(table, metric, methods, targets), ""]
            if metric == "SDR":
                parts += oracle_share_section(table, methods, targets)
        written[f"aggregate{suffix}_md"] = write_text_atomic(
            out / f"aggregate{suffix}.md", "\n".join(parts)
        )

    written["boxplot"] = plot_boxplot(
        per_track, out / "boxplot_sdr.png", methods, targets, metric="SDR"
    )
    return written


def read_aggregate(folder: str | os.PathLike, method: str) -> dict[str, dict[str, float]]:
    """{target: {metric: dB}} of `method` from the aggregate.csv that `write_reports` wrote into `folder`
    (NaN where a metric is undefined, e.g. ISR in the paper protocol)."""
    with open(Path(folder) / "aggregate.csv", newline="") as fh:
        return {
            row["target"]: {m: float(row[m] or "nan") for m in METRICS if m in row}
            for row in csv.DictReader(fh)
            if row["method"] == method
        }


def read_track_scores(
    folder: str | os.PathLike, method: str, metric: str = "SDR"
) -> dict[tuple[str, str], float]:
    """{(track, target): dB} of one metric of `method` from the track_scores.csv in `folder`."""
    with open(Path(folder) / "track_scores.csv", newline="") as fh:
        return {
            (row["track"], row["target"]): float(row[metric] or "nan")
            for row in csv.DictReader(fh)
            if row["method"] == method
        }


def header_notes(evaluation: Evaluation, targets: Sequence[str], n_scored: int) -> list[str]:
    """Markdown lines under the title: mapped model outputs, tracks per instrument when a track lacks
    some stems, tracks not scored, failures."""
    settings = evaluation.settings
    lines = []
    mapped = [(t, settings.output_for(t)) for t in targets if settings.output_for(t) != t]
    if mapped and settings.model_name in evaluation.methods:
        pairs = ", ".join(f"`{t}` from its `{o}` output" for t, o in mapped)
        lines += [f"Model estimates (`--map`): {settings.model_name} scores {pairs}.", ""]
    scores = evaluation.scores
    per_target = scores.groupby("target")["track"].nunique() if len(scores) else {}
    counts = {t: int(per_target.get(t, 0)) for t in targets}
    if any(n != n_scored for n in counts.values()):
        lines += [
            "Tracks scored per instrument (a track is scored for the stems it holds, silent ones excepted): "
            + ", ".join(f"{t} {n}" for t, n in counts.items())
            + ".",
            "",
        ]
    if evaluation.skipped:
        lines += [
            f"Not scored: {len(evaluation.skipped)} track(s) without a scored stem, or with silent ones "
            "only (see settings.json).",
            "",
        ]
    if evaluation.failures:
        lines += [f"Failures: {len(evaluation.failures)} (see failures.tsv).", ""]
    return lines


def plot_boxplot(
    per_track: Any,
    path: str | os.PathLike,
    methods: Sequence[str],
    targets: Sequence[str],
    metric: str = "SDR",
) -> Path:
    """Boxplot PNG of per-track `metric` (dB): one panel per target, one box per method.

    per_track: output of `track_scores`. Uses the Agg canvas directly (no pyplot,
    no global backend switch), so it works without a display.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(
        figsize=(1.0 + len(targets) * (0.5 * len(methods) + 0.6), 4.0), layout="constrained"
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(targets), sharey=True, squeeze=False)[0]
    frame = per_track[metric].reset_index()
    for ax, target in zip(axes, targets, strict=False):
        data = []
        for method in methods:
            values = frame[(frame["method"] == method) & (frame["target"] == target)][
                metric
            ].to_numpy(float)
            data.append(values[np.isfinite(values)])
        ax.boxplot(data, showmeans=False, medianprops={"color": "black"})
        ax.set_xticks(range(1, len(methods) + 1), list(methods), rotation=45, ha="right")
        ax.set_title(target)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(f"{metric} (dB), per track")
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


def _reorder(table: Any, methods: Sequence[str] | None, targets: Sequence[str] | None) -> Any:
    import pandas as pd

    have_m = list(dict.fromkeys(table.index.get_level_values(0)))
    have_t = list(dict.fromkeys(table.index.get_level_values(1)))
    m_order = [m for m in (methods or []) if m in have_m] + [
        m for m in have_m if m not in (methods or [])
    ]
    t_order = [t for t in (targets or []) if t in have_t] + [
        t for t in have_t if t not in (targets or [])
    ]
    index = pd.MultiIndex.from_tuples(
        [(m, t) for m in m_order for t in t_order if (m, t) in table.index],
        names=["method", "target"],
    )
    return table.reindex(index)

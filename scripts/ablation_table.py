#!/usr/bin/env python
"""Collect the ablations (configs/ablations/) into one markdown table.

Each row is a training run (its directory holds provenance.json) scored by `cunet evaluate` into an
evaluation folder (its aggregate.csv: museval BSSEval v4, median over frames then tracks), or a
post-processing variant of an already scored model. The table gives valid-split SDR per stem, the
delta against a reference method (the current shipped model), the training minutes and the command.

    python scripts/ablation_table.py --rows rows.json --reference shipped > docs/results/ablations.md
    python scripts/ablation_table.py --rows rows.json --reference shipped --paired "v2:v1 + ratio" --paired "v2:a0"

--paired A:B adds a second table: per instrument, the mean over tracks of A's SDR minus B's (from each eval
folder's track_scores.csv) and on how many tracks A is ahead: paired, so less noisy than the medians.

rows.json: [{"name": ..., "lever": ..., "eval": "eval_dir", "method": "cunet", "run": "run_dir" (optional),
             "training": "50 (29 ep., best 14)" (optional), "command": "..."}]; the training minutes come
from the run directory's provenance while it exists, else from "training" (run directories outlive a
session only sometimes). The row whose name is --reference is the baseline of the deltas.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cunet.evaluate.reports import read_aggregate, read_track_scores

INSTRUMENTS = ("vocals", "drums", "bass", "other")


def paired_table(rows: list[dict], pairs: list[str]) -> list[str]:
    by_name = {r["name"]: r for r in rows}
    out = ["| comparison | " + " | ".join(INSTRUMENTS) + " |", "|---|" + "---:|" * len(INSTRUMENTS)]
    for pair in pairs:
        a_name, _, b_name = pair.partition(":")
        a, b = (
            read_track_scores(
                Path(by_name[n]["eval"]).expanduser(), by_name[n].get("method", "cunet")
            )
            for n in (a_name, b_name)
        )
        cells = []
        for inst in INSTRUMENTS:
            diffs = [a[k] - b[k] for k in a if k[1] == inst and k in b]
            cells.append(
                f"{sum(diffs) / len(diffs):+.2f} ({sum(d > 0 for d in diffs)}/{len(diffs)})"
                if diffs
                else "–"
            )
        out.append(f"| {a_name} - {b_name} | " + " | ".join(cells) + " |")
    return out


def training_minutes(run_dir: Path | None, recorded: str = "–") -> str:
    """'minutes (epochs ep., best N)' from a run's provenance.json, else the row's recorded text."""
    if run_dir is None or not (run_dir / "provenance.json").exists():
        return recorded
    metrics = json.loads((run_dir / "provenance.json").read_text()).get("metrics", {})
    minutes = metrics.get("train_minutes")
    epochs = metrics.get("epochs_done")
    best = metrics.get("best_epoch")
    return f"{minutes:.0f} ({epochs} ep., best {best})" if minutes is not None else "–"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", required=True, help="JSON list of rows (see the docstring)")
    parser.add_argument(
        "--reference", required=True, help="name of the row the deltas are taken against"
    )
    parser.add_argument(
        "--paired",
        action="append",
        default=[],
        metavar="A:B",
        help="also compare rows A and B track by track (repeatable)",
    )
    args = parser.parse_args(argv)
    rows = json.loads(Path(args.rows).read_text())
    scores = {
        r["name"]: {
            target: values["SDR"]
            for target, values in read_aggregate(
                Path(r["eval"]).expanduser(), r.get("method", "cunet")
            ).items()
        }
        for r in rows
    }
    ref = scores[args.reference]
    out = [
        "| row | lever | "
        + " | ".join(INSTRUMENTS)
        + " | delta vs "
        + args.reference
        + " (v / d / b / o) | training min | command |",
        "|---|---|" + "---:|" * len(INSTRUMENTS) + "---|---:|---|",
    ]
    for r in rows:
        s = scores[r["name"]]
        cells = " | ".join(f"{s.get(i, float('nan')):.2f}" for i in INSTRUMENTS)
        delta = " / ".join(
            f"{s.get(i, float('nan')) - ref.get(i, float('nan')):+.2f}" for i in INSTRUMENTS
        )
        run = Path(r["run"]).expanduser() if r.get("run") else None
        out.append(
            f"| {r['name']} | {r['lever']} | {cells} | {delta} | {training_minutes(run, r.get('training', '–'))} | "
            f"`{r['command']}` |"
        )
    if args.paired:
        out += [
            "",
            "Paired over tracks: mean SDR difference in dB (tracks where the first is ahead / tracks).",
            "",
        ]
        out += paired_table(rows, args.paired)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Package a trained checkpoint as the model shipped inside cunet.

    python scripts/ship_model.py --run /path/to/run [--metrics results/valid/aggregate.json] \
        [--ratio-power P] [--out cunet/pretrained/default.keras]

Rebuilds the model from the checkpoint's embedded config (dropping the
optimizer state), and stores weights plus provenance: the training record,
museval metrics if given, and the commit/package versions at packaging time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--run", required=True, help="training run directory (uses best.keras) or a .keras file"
    )
    parser.add_argument(
        "--metrics", default=None, help="JSON file with evaluation results to embed"
    )
    parser.add_argument(
        "--ratio-power",
        type=float,
        default=None,
        help="the model's default ratio power at inference (model.ratio_power; default: the run's)",
    )
    parser.add_argument("--out", default=str(ROOT / "cunet" / "pretrained" / "default.keras"))
    args = parser.parse_args(argv)

    from cunet.engines.loading import load_keras_model, resolve_model_path
    from cunet.nn.models import build_model
    from cunet.provenance import make_provenance, save_model

    source = resolve_model_path(args.run)
    trained, config, training = load_keras_model(source)
    if args.ratio_power is not None:
        config = dataclasses.replace(
            config, model=dataclasses.replace(config.model, ratio_power=args.ratio_power)
        )
        config.model.validate()
    model = build_model(config)
    model.set_weights(trained.get_weights())
    evaluation = json.loads(Path(args.metrics).read_text()) if args.metrics else {}
    provenance = make_provenance(
        config.to_dict(),
        data=training.get("data", {}),
        metrics={"training": training.get("metrics", {}), "evaluation": evaluation},
        source_checkpoint=str(source),
        training_git_commit=training.get("git_commit"),
        training_packages=training.get("packages"),
        parent=training.get("parent"),
        n_parameters=int(model.count_params()),
        status="shipped",
    )
    provenance["metrics"]["training"].pop("history", None)
    provenance["training_history"] = training.get("metrics", {}).get("history", [])
    out = save_model(model, args.out, provenance)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {model.count_params():,} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Average the weights of checkpoints of one model (a "model soup": runs that share their start).

    python scripts/average_models.py A.keras B.keras [C.keras ...] --out soup.keras

Each input is a `.keras` file or a training run directory (its best.keras). All must have the same
architecture (their configs may differ in the training section, the name, and settings that leave the
weights alone: patch length, post-processing, dropout); the result takes the first one's config, and
its provenance lists every ingredient with the SHA-256 of its weights. Weights, batch-norm statistics
included, are averaged uniformly, in float64.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", help=".keras files or run directories (at least two)")
    parser.add_argument("--out", type=Path, required=True, help="the averaged .keras file to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from cunet.engines.loading import load_keras_model, resolve_model_path
    from cunet.errors import CunetError
    from cunet.provenance import make_provenance, save_model
    from cunet.training.finetune import same_weights

    try:
        if len(args.models) < 2:
            raise CunetError("give at least two models to average")
        loaded = []
        for name in args.models:
            path = resolve_model_path(name)
            model, config, record = load_keras_model(path)
            loaded.append((path, model, config, record))
        first_path, model, config, record = loaded[0]
        for path, _, other, _ in loaded[1:]:
            if not same_weights(other, config):
                raise CunetError(
                    f"'{path}' is not the same model as '{first_path}' (architecture or audio differ)"
                )
        stacks = zip(*(m.get_weights() for _, m, _, _ in loaded), strict=True)
        model.set_weights(
            [np.mean(np.stack(ws), axis=0, dtype=np.float64).astype(ws[0].dtype) for ws in stacks]
        )
        provenance = make_provenance(
            config.to_dict(),
            data=record.get("data", {}),
            metrics={},
            status="averaged",
            ingredients=[
                {
                    "path": str(path),
                    "weights_sha256": r.get("weights_sha256"),
                    "git_commit": r.get("git_commit"),
                }
                for path, _, _, r in loaded
            ],
            parent=record.get("parent"),
            n_parameters=int(model.count_params()),
        )
        out = save_model(model, args.out, provenance)
    except CunetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}: the mean of {len(loaded)} models")
    return 0


if __name__ == "__main__":
    sys.exit(main())

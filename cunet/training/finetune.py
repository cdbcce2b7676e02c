"""Starting a run from a trained model (`cunet train --init-from default|PATH`).

With the same instruments every weight is copied (fine-tuning). With more instruments (the
parent's, in the same order, then new ones) every weight is copied too, except the control
network's input layer, which gains one row per new instrument: a new condition starts as a copy
of the parent's "other" (the catch-all stem most new instruments used to fall into), or of the
mean of the parent's rows when it has no "other". The old conditions' one-hot vectors still select
the old rows, so the old instruments' masks are unchanged at step 0. Fewer or renamed instruments,
another architecture or other audio settings are refused.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ..config import Config
from ..errors import DataError
from ..provenance import weights_digest

CATCH_ALL = "other"


def _architecture(config: Config) -> dict[str, Any]:
    """Everything that fixes the weights' shapes, except the instrument list."""
    model = dataclasses.asdict(config.model)
    for key in (
        "instruments",
        "target",
        "n_frames",
        "decoder_dropout",
        "control_dropout",
        "postprocess",
        "batchnorm_momentum",
    ):
        model.pop(key)
    return {"audio": dataclasses.asdict(config.audio), "model": model}


def check_compatible(parent: Config, child: Config) -> list[str]:
    """The instruments the child adds to the parent's; DataError (one line) when it cannot start from it."""
    if _architecture(parent) != _architecture(child):
        a, b = _architecture(parent), _architecture(child)
        diff = [
            f"{section}.{k}"
            for section in a
            for k in a[section]
            if a[section][k] != b[section].get(k)
        ]
        raise DataError(
            f"cannot start from the parent model: its config differs in {', '.join(diff)}"
        )
    old, new = parent.model.instruments, child.model.instruments
    if tuple(new[: len(old)]) != tuple(old):
        raise DataError(
            f"cannot start from the parent model: its instruments {list(old)} must come first, in "
            f"order, in the new config's instruments {list(new)} (fewer or renamed ones are refused)"
        )
    added = list(new[len(old) :])
    if added and child.model.control_type != "dense":
        raise DataError("adding instruments to a parent model needs model.control_type: dense")
    return added


def copy_weights(
    parent: keras.Model, child: keras.Model, parent_config: Config, child_config: Config
) -> None:
    """Copy every weight of `parent` into `child` (built from child_config), growing the control input."""
    added = check_compatible(parent_config, child_config)
    old = list(parent_config.model.instruments)
    by_path = {w.path: w for w in child.weights}
    for weight in parent.weights:
        target = by_path.get(weight.path)
        if target is None:
            raise DataError(
                f"cannot start from the parent model: the new network has no weight '{weight.path}'"
            )
        value = keras.ops.convert_to_numpy(weight)
        if (
            tuple(target.shape) != value.shape
        ):  # the control network's first kernel [n_instruments, units]
            source = value[old.index(CATCH_ALL)] if CATCH_ALL in old else value.mean(axis=0)
            value = np.concatenate([value, np.repeat(source[None], len(added), axis=0)])
        target.assign(value)


def parent_record(path: Path, provenance: dict[str, Any]) -> dict[str, Any]:
    """What the child's provenance says about its parent."""
    return {
        "path": str(path),
        "weights_sha256": weights_digest(path),
        "instruments": provenance.get("config", {}).get("model", {}).get("instruments"),
        "git_commit": provenance.get("git_commit"),
        "created": provenance.get("created"),
    }

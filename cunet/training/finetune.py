"""Starting a run from a trained model (`cunet train --init-from default|PATH`).

With the same instruments every weight is copied (fine-tuning). With more instruments (the
parent's, in the same order, then new ones) every weight is copied too, except the control
network's input layer, which gains one row per new instrument: a new condition starts as a copy
of the parent's "other" (the catch-all stem most new instruments used to fall into), or of the
mean of the parent's rows when it has no "other". The old conditions' one-hot vectors still select
the old rows, so the old instruments' masks are unchanged at step 0.

The child may also grow the architecture: FiLM in more blocks (`model.film_placement` "encoder" or
"decoder" -> "both") and TDF layers where the parent had none. A new FiLM block starts as the
identity (gamma 1, beta 0) and a new TDF layer adds nothing until trained (`cunet.nn.layers.TDF`), so
the child computes the parent's masks at step 0. Fewer or renamed instruments, any other
architecture change or other audio settings are refused.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ..config import Config
from ..errors import DataError
from ..nn.models import film_layout
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
        "ratio_power",
        "batchnorm_momentum",
        *GROWABLE,
    ):
        model.pop(key)
    return {"audio": dataclasses.asdict(config.audio), "model": model}


# Architecture settings a child may grow (see the module docstring).
GROWABLE = ("film_placement", "tdf", "tdf_bottleneck")


def same_weights(a: Config, b: Config) -> bool:
    """Whether two configs build networks whose weights match one to one (same shapes, same roles):
    settings of training patches or inference (n_frames, postprocess, ratio_power, dropout) may
    differ. Checkpoints that pass can be averaged."""
    return (
        _architecture(a) == _architecture(b)
        and (a.model.instruments, a.model.target) == (b.model.instruments, b.model.target)
        and all(getattr(a.model, k) == getattr(b.model, k) for k in GROWABLE)
    )


def _blocks(placement: str) -> set[str]:
    return {
        "none": set(),
        "encoder": {"encoder"},
        "decoder": {"decoder"},
        "both": {"encoder", "decoder"},
    }[placement]


def _check_growth(parent: Config, child: Config) -> None:
    p, c = parent.model, child.model
    if not _blocks(p.film_placement) <= _blocks(c.film_placement):
        raise DataError(
            f"cannot start from the parent model: its FiLM sits in the {p.film_placement}, which "
            f"model.film_placement {c.film_placement!r} does not keep"
        )
    if c.film_type == "gpocm" and _blocks(c.film_placement) != _blocks(p.film_placement):
        raise DataError(  # a gate sigmoid(x @ W + b) is never exactly 1, so it cannot start as the identity
            "cannot start from the parent model: new GPoCM blocks cannot start as the identity; "
            "keep model.film_placement as the parent's"
        )
    if p.tdf != "none" and (p.tdf != c.tdf or p.tdf_bottleneck != c.tdf_bottleneck):
        raise DataError(
            f"cannot start from the parent model: its TDF layers (model.tdf {p.tdf!r}, bottleneck "
            f"{p.tdf_bottleneck}) must be kept as they are"
        )


def check_compatible(parent: Config, child: Config) -> list[str]:
    """The instruments the child adds to the parent's; DataError (one line) when it cannot start from it."""
    a, b = _architecture(parent), _architecture(child)
    if a != b:
        diff = [
            f"{section}.{k}"
            for section in a
            for k in a[section]
            if a[section][k] != b[section].get(k)
        ]
        raise DataError(
            f"cannot start from the parent model: its config differs in {', '.join(diff)}"
        )
    _check_growth(parent, child)
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


def _film_columns(config: Config, output: str) -> dict[str, slice]:
    """Each modulation layer's columns in the control network's `output` ("gammas" or "betas")."""
    columns, offset = {}, 0
    for name, n_gammas, n_betas in film_layout(config):
        width = n_gammas if output == "gammas" else n_betas
        columns[name] = slice(offset, offset + width)
        offset += width
    return columns


def _grow_film_output(
    value: np.ndarray,
    target_shape: tuple[int, ...],
    parent_config: Config,
    child_config: Config,
    output: str,
) -> np.ndarray:
    """A gamma or beta output weight (kernel [units, n_params] or bias [n_params]) of the parent laid out
    for the child's FiLM layers; the child's new layers get a zero kernel and the identity's bias
    (gamma 1, beta 0)."""
    grown = np.zeros(target_shape, value.dtype)
    if value.ndim == 1:
        grown[:] = 1.0 if output == "gammas" else 0.0
    parent_columns = _film_columns(parent_config, output)
    for name, columns in _film_columns(child_config, output).items():
        if name in parent_columns:
            grown[..., columns] = value[..., parent_columns[name]]
    return grown


def copy_weights(
    parent: keras.Model, child: keras.Model, parent_config: Config, child_config: Config
) -> None:
    """Copy every weight of `parent` into `child` (built from child_config), growing the control input
    and the FiLM outputs; the child's new TDF weights keep their (identity) initialisation."""
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
        name = weight.path.split("/")[-2] if "/" in weight.path else ""
        if tuple(target.shape) != value.shape and name in ("gammas", "betas"):
            value = _grow_film_output(
                value,
                tuple(target.shape),
                parent_config,
                child_config,
                output=name,
            )
        elif (
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

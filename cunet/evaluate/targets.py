"""What is scored: reference stems, and which model output estimates each one (`--instruments`, `--map`).

The scored names are always *reference* names: stems the data holds. By default a reference stem is
estimated by the model output of the same name. A map `{reference: output}` (the CLI's
`--map guitar=other`) makes another output the estimate of a reference stem: "how good is the
model's `other` condition as a guitar separator?". The same mechanism is an alias for models whose
output names differ from the data's (`--map vocals=voice`). Baselines (mixture, oracle masks) are
computed from the references themselves and ignore the map.

Pure Python (no NumPy), so the CLI can check names before anything heavy loads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import UserError, literal

MAP_EXAMPLE = "e.g. {map} guitar=other"
# how messages name the settings (the CLI shows its options instead)
_NAMES = {"map": "map", "instruments": "instruments", "no_model": "no model"}


def _error(text: str) -> UserError:
    """A UserError whose `{map}`-style fields are named as the caller shows them (braces doubled)."""
    return UserError(text, names=_NAMES)


def parse_map(texts: Sequence[str]) -> dict[str, str]:
    """`["guitar=other", "keys=other,voice=vocals"]` -> {reference: model output}, in the order given.

    Each text holds one or more comma-separated REFERENCE=OUTPUT pairs. Raises UserError for a pair
    without exactly one "=", an empty name, or a reference mapped to two different outputs.
    """
    mapping: dict[str, str] = {}
    for text in texts:
        for item in str(text).split(","):
            reference, sep, output = (part.strip() for part in item.partition("="))
            if not sep or not reference or not output or "=" in output:
                raise _error(
                    f"bad {{map}} '{literal(item)}' (expected REFERENCE=OUTPUT, {MAP_EXAMPLE})"
                )
            if mapping.get(reference, output) != output:
                raise _error(
                    "{map} "
                    + literal(
                        f"gives two outputs for '{reference}': '{mapping[reference]}' and '{output}'"
                    )
                )
            mapping[reference] = output
    return mapping


def resolve_targets(
    requested: Sequence[str] | None,
    data_stems: Sequence[str],
    outputs: Sequence[str] | None,
    mapping: Mapping[str, str] | None = None,
) -> tuple[tuple[str, ...], dict[str, str]]:
    """The reference stems to score, and the model output that estimates each one.

    requested: reference names (`--instruments`), or None for the default: every reference stem
        that a model output estimates (same name or mapped), or every stem in the data without a model.
    data_stems: the stems the tracks hold (their union). outputs: the model's outputs, None without
        a model. mapping: {reference: output} (`--map`).
    Returns (targets, {target: output}) with the targets in the model's output order, then mapped
    ones, then the data's order; the dict is empty without a model.
    Raises UserError (one line) for a name the data or the model lacks, or a map without a model.
    """
    mapping = dict(mapping or {})
    stems = list(dict.fromkeys(data_stems))
    have = f"stems in the data: {', '.join(stems) or 'none'}"
    if outputs is None:
        if mapping:
            raise _error("{map} needs a model (it picks model outputs; drop {no_model})")
    else:
        for reference, output in mapping.items():
            if output not in outputs:
                raise _error(
                    "{map} "
                    + literal(
                        f"{reference}={output}: the model has no '{output}' output "
                        f"(outputs: {', '.join(outputs)})"
                    )
                )
            if reference not in stems:
                raise _error(
                    "{map} "
                    + literal(f"{reference}={output}: no track holds a '{reference}' stem ({have})")
                )
    if requested is not None:
        targets = list(dict.fromkeys(requested))
        if not targets:
            raise UserError("no instrument requested")
        for name in targets:
            if name not in stems:
                raise UserError(
                    f"unknown instrument '{name}': no track holds a '{name}' stem ({have})"
                )
            if outputs is not None and name not in outputs and name not in mapping:
                raise _error(
                    literal(
                        f"the model has no '{name}' output (outputs: {', '.join(outputs)}); score "
                        f"another output as '{name}' with "
                    )
                    + "{map} "
                    + literal(f"{name}=OUTPUT")
                )
    elif outputs is None:
        targets = stems
    else:
        order = [*outputs, *mapping, *stems]
        targets = [n for n in dict.fromkeys(order) if n in stems and (n in outputs or n in mapping)]
        if not targets:
            raise _error(
                literal(
                    f"the model's outputs ({', '.join(outputs)}) and the {have} share no name; "
                )
                + f"choose with {{instruments}} and {{map}} REFERENCE=OUTPUT ({MAP_EXAMPLE})"
            )
    estimate_from = {} if outputs is None else {t: mapping.get(t, t) for t in targets}
    return tuple(targets), estimate_from

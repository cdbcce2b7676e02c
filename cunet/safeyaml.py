"""Reading small YAML files from strangers safely: one-line ConfigErrors naming file and line, and limits
checked before anything is built (size, alias expansion, nesting; no tags that create Python objects);
the typed dataclasses that configs are built from such documents."""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

# Read at most this many bytes; build at most this many nodes, aliases counted once per use (so "billion
# laughs" documents are refused before they are expanded).
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_NODES = 100_000


def read_yaml(path: str | Path) -> Any:
    """The document of a small YAML file, parsed safely (no tags that build Python objects).

    Refuses, with a one-line ConfigError naming the file (and line for syntax errors): files that are
    not regular files or exceed MAX_CONFIG_BYTES, and documents that nest too deeply or whose aliases
    would expand to more than MAX_CONFIG_NODES nodes (checked before anything is built).
    """
    import yaml

    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ConfigError(f"config file '{path}' is not a regular file")
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file '{path}': {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config file '{path}' is larger than {MAX_CONFIG_BYTES >> 20} MiB; not a cunet config"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file '{path}' is not UTF-8 text (byte {exc.start})") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, path) > MAX_CONFIG_NODES:
            raise ConfigError(
                f"config file '{path}' expands to more than {MAX_CONFIG_NODES} values "
                "(aliases used too often); not a cunet config"
            )
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        if "constructor for the tag" in problem:
            problem += " (tags that create Python objects are not allowed)"
        raise ConfigError(f"config file '{path}' is not valid YAML: {where}{problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"config file '{path}' is not valid YAML: {' '.join(str(exc).split())}"
        ) from None
    except RecursionError:
        raise ConfigError(
            f"config file '{path}' is nested too deeply; not a cunet config"
        ) from None
    finally:
        loader.dispose()


def _expanded_size(root: Any, path: Path) -> int:
    """Number of nodes of a composed YAML document once every alias is expanded, without expanding it
    (each distinct node is visited once); ConfigError for a recursive alias. Capped above MAX_CONFIG_NODES."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        children = _yaml_children(node)
        if finished:
            on_path.discard(key)
            size[key] = min(MAX_CONFIG_NODES + 1, 1 + sum(size[id(c)] for c in children))
        elif key not in size:
            if key in on_path:
                raise ConfigError(
                    f"config file '{path}' refers to itself (a recursive alias); not a cunet config"
                )
            on_path.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in children)
    return size[id(root)]


def _yaml_children(node: Any) -> list[Any]:
    value = getattr(node, "value", None)
    if not isinstance(value, list):
        return []  # a scalar
    return [n for item in value for n in (item if isinstance(item, tuple) else (item,))]


def to_plain(value: Any) -> Any:
    """`value` with tuples as lists, in nested dicts and lists (for YAML and JSON)."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def build_dataclass(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    """An instance of the dataclass `cls` from a mapping read from YAML: unknown keys and values of
    another type than the field's default are a ConfigError naming `prefix` + the key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"'{prefix}' must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"unknown key '{prefix}{key}' (valid: {', '.join(sorted(fields))})")
        default = getattr(cls(), key)
        kwargs[key] = _coerce(value, default, f"{prefix}{key}")
    return cls(**kwargs)


def _coerce(value: Any, default: Any, key: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"invalid value for '{key}': expected true/false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"invalid value for '{key}': expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"invalid value for '{key}': expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"invalid value for '{key}': expected a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"invalid value for '{key}': expected a list, got {value!r}")
        template = default[0] if default else value[0] if value else 0
        return tuple(_coerce(v, template, f"{key}[{i}]") for i, v in enumerate(value))
    return value

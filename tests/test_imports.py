"""Imports run one way: no cycle among cunet's modules (function-level imports included), every module
imports alone in a fresh interpreter, and no module grows past 400 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cunet"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if p.name != "__main__.py"}


def _imports(name: str, path: Path) -> set[str]:
    """The cunet modules `name` imports anywhere in its source (module level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if (
                node.module
            ):  # `from ..nn import layers` imports cunet.nn.layers, not the (always loaded) package
                found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {m for m in found if m in MODULES and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    result: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return result


def test_no_import_cycle() -> None:
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    assert graph["cunet.separator"] >= {
        "cunet.chunk_separator",
        "cunet.engines.loading",
    }  # real edges seen
    assert "cunet.separator" not in graph["cunet.export.formats"]
    assert not any(m.startswith("cunet.export") for m in graph["cunet.engines.loading"])
    # the web app sits over the jobs, and only its command imports it
    assert "cunet.jobs" in graph["cunet.ui.jobs"]
    over_ui = {
        m
        for m, deps in graph.items()
        if not m.startswith("cunet.ui") and any(d.startswith("cunet.ui") for d in deps)
    }
    assert over_ui == {"cunet.commands.ui"}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_imports_alone() -> None:
    def run(name: str) -> tuple[str, int, str]:
        proc = subprocess.run(
            [sys.executable, "-c", f"import {name}"],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
        )
        return name, proc.returncode, proc.stderr[-2000:]

    with ThreadPoolExecutor(2) as pool:
        failed = [(name, err) for name, code, err in pool.map(run, MODULES) if code != 0]
    assert failed == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_under_400_lines(name: str) -> None:
    n_lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert n_lines < 400, f"{name} has {n_lines} lines"

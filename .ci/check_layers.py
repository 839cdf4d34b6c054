#!/usr/bin/env python3
"""hood's layering, checked: every import (lazy ones inside functions included) goes down the floors or stays on
its own floor, and no modules import each other in a circle. `make lint` and the test suite run it.

    python .ci/check_layers.py [ROOT]   # ROOT: the repository (default: the one this file lives in)

The floors, lowest first (README, "Layout"); a module belongs to the first entry that is it or a package above it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

FLOORS: list[tuple[str, ...]] = [
    ("hood.version", "hood.errors", "hood.fileio", "hood.locks", "hood.progress", "hood.fingerprint", "hood.metrics"),
    ("hood.data", "hood.models", "hood.viz"),
    ("hood.config",),
    ("hood.engine", "hood.runs"),
    ("hood.detectors",),
    ("hood.jobs",),
    ("hood.api", "hood.cli"),
    ("hood", "hood.__main__"),
]


def floor_of(module: str) -> int:
    """The floor of ``module``: the most specific entry of :data:`FLOORS` that is it or one of its packages."""
    best, depth = -1, -1
    for level, names in enumerate(FLOORS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and name.count(".") > depth:
                best, depth = level, name.count(".")
    if best < 0:
        raise SystemExit(f"check_layers: {module} is on no floor; add it to FLOORS in {__file__}")
    return best


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in sorted((root / "hood").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The hood modules ``path`` imports; ``from pkg import mod`` counts as importing ``pkg.mod``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "hood")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "hood" and node.level == 0:
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known]
            found.update(subs if len(subs) == len(node.names) else [node.module, *subs])
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    known = modules(root)
    graph = {m: {i for i in imports(p, known) if i != m} for m, p in known.items()}
    problems = []
    for m, targets in sorted(graph.items()):
        for t in sorted(targets):
            if floor_of(t) > floor_of(m):
                problems.append(f"{known[m].relative_to(root)}: {m} (floor {floor_of(m)}) imports {t} (floor {floor_of(t)}), a floor above")
    # a package's __init__ gathering its own modules is the package, not a circle through it
    without_inits = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    for group in cycles(without_inits):
        problems.append(f"these modules import each other in a circle: {', '.join(group)}")
    for p in problems:
        print(p)
    if problems:
        print(f"check_layers: {len(problems)} import(s) above break the layering", file=sys.stderr)
        return 1
    print(f"check_layers: {len(known)} modules, every import goes down the floors")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The named benchmarks as the CLI shows them (``hood evaluate --benchmark list``, ``hood download --list``) and
what ``hood download NAME`` prints before it fetches a benchmark's sets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hood.cli.options import stdout


def human(size: int | None) -> str:
    """Bytes for people (decimal units, as the publishers give them); ? where no size is published."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def benchmark_rows(root: Path) -> list[dict[str, Any]]:
    """One row per benchmark: its sets, convention, validation split, download size and what is missing."""
    from hood.data import benchmarks

    rows = []
    for name in benchmarks.names():
        b = benchmarks.get(name)
        needs = b.needs()
        sizes = [benchmarks.size_of(n) for n in needs]
        absent = benchmarks.missing(b, root, None)
        rows.append({
            "name": name, "title": b.title, "id": b.id, "fpr_convention": b.fpr_convention,
            "ood": {s.name: s.group for s in b.ood}, "validation": b.has_validation, "needs": needs,
            "size": sum(s for s in sizes if s is not None), "size_unknown": [n for n, s in zip(needs, sizes, strict=True) if s is None],
            "missing": absent, "state": "present" if not absent else f"{len(absent)} of {len(needs)} sets missing",
        })
    return rows


def print_benchmarks(root: Path) -> None:
    """Three lines per benchmark (no table: its set lists would fold into pieces in a narrow terminal)."""
    stdout.print(f"[bold]benchmarks[/] (hood evaluate --benchmark NAME; hood download NAME fetches what it reads) under {root}", highlight=False)
    for r in benchmark_rows(root):
        groups: dict[str, list[str]] = {}
        for s, g in r["ood"].items():
            groups.setdefault(g or "", []).append(s)
        sets = "; ".join(f"{g}: {', '.join(v)}" if g else ", ".join(v) for g, v in groups.items())
        rule = "every listed image" if r["validation"] else "len(ID test)/5 of each"
        size = human(r["size"]) + (f" + {len(r['size_unknown'])} set(s) of unpublished size" if r["size_unknown"] else "")
        val = "its own validation split" if r["validation"] else "no validation split (use hood's)"
        stdout.print(f"[bold]{r['name']}[/]  ID {r['id']}, FPR convention {r['fpr_convention']}, {val}", highlight=False)
        stdout.print(f"  OOD ({rule}): {sets}", highlight=False)
        stdout.print(f"  download {size}; {r['state']}", highlight=False)


def download_plan_lines(name: str, root: Path) -> list[str]:
    """What ``hood download BENCHMARK`` is about to fetch, with sizes, printed before it starts."""
    from hood.data import benchmarks, registry

    b = benchmarks.get(name)
    lines = []
    total, unknown = 0, 0
    for n in b.needs():
        size = benchmarks.size_of(n)
        present = registry.is_installed(n, root)
        if not present:
            total += size or 0
            unknown += size is None
        lines.append(f"  {n:<24} {human(size):>9}  {'present' if present else 'to fetch'}")
    head = f"{name} reads {len(lines)} sets; to fetch: {human(total)}"
    head += f" and {unknown} set(s) whose publisher gives no size" if unknown else ""
    return [head, *lines]

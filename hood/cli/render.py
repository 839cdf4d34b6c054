"""Rich renderings of results: the OOD table (methods side by side, best per column in bold)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

LOWER_IS_BETTER = {"fpr95"}
COLUMNS = (("fpr95", "FPR95↓"), ("auroc", "AUROC↑"), ("aupr_in", "AUPR-In↑"), ("aupr_out", "AUPR-Out↑"))


def caption(results: dict[str, Any]) -> str:
    conv = results.get("fpr_convention", "id")
    return f"--fpr-convention {conv}. {results.get('caption', '')}; values in %; best of each column in bold"


def results_table(results: dict[str, Any], metrics: tuple[str, ...] | None = None, width: int | None = None) -> Table | Group:
    """Rows: OOD sets and their mean; columns grouped by method. With one method all four metrics show,
    with several FPR95 and AUROC (the comparison people read). Too many methods for ``width`` columns
    split into several tables of the same rows, rather than squeezing numbers into wrapped cells."""
    methods = list(results["results"])
    if metrics is None:
        metrics = tuple(k for k, _ in COLUMNS) if len(methods) == 1 else ("fpr95", "auroc")
    best = _best(results, methods, metrics)
    if width is None:
        from hood.cli.options import stdout

        width = stdout.width
    sets = list(results["results"][methods[0]])
    n_w = max(len(str(results["results"][methods[0]][x].get("n", ""))) for x in sets)
    label_w = 1 + (max(len(x) for x in [*sets, "OOD set"]) + 3) + (max(n_w, 1) + 3)  # borders, padding
    chunks: list[list[str]] = [[]]
    used = label_w
    for m in methods:
        w = len(metrics) * (max(len(m), 6) + 3)  # "FPR95↓" / "100.0" / the method name, padding, rule
        if chunks[-1] and used + w > width:
            chunks.append([])
            used = label_w
        chunks[-1].append(m)
        used += w
    if len(chunks) == 1:
        return _table(results, methods, metrics, best, True, caption(results))
    tables = [_table(results, chunk, metrics, best, i == 0, None) for i, chunk in enumerate(chunks)]
    return Group(*tables, Text(caption(results), style="dim italic"))


def _best(results: dict[str, Any], methods: list[str], metrics: tuple[str, ...]) -> dict[tuple[str, str], float]:
    """The best value per (set, metric) across methods: what bold marks in each metric column group."""
    best = {}
    for s in results["results"][methods[0]]:
        for k in metrics:
            vals = [results["results"][m][s][k] for m in methods]
            best[(s, k)] = min(vals) if k in LOWER_IS_BETTER else max(vals)
    return best


def _table(results: dict[str, Any], methods: list[str], metrics: tuple[str, ...], best: dict[tuple[str, str], float],
           first: bool, cap: str | None) -> Table:
    labels = dict(COLUMNS)
    several = len(results["results"]) > 1
    acc = results.get("id_test_accuracy")
    from hood.data.sources import dataset_label  # the short name; results.json keeps the exact spec

    kind = "held-out" if "validation" in results else "test"  # evaluate --validation scores held-out training images
    title = f"OOD detection — ID {dataset_label(results['id_dataset'])} ({results['n_id']} {kind} images"
    title += f", accuracy {acc * 100:.1f}%)" if acc is not None else ")"
    table = Table(title=title if first else None, caption=cap, title_justify="left",
                  caption_justify="left")
    table.add_column("OOD set", style="bold")
    table.add_column("n", justify="right")
    for m in methods:
        for k in metrics:
            table.add_column(f"{m}\n{labels[k]}" if several else labels[k], justify="right")
    sets = list(results["results"][methods[0]])
    for s in sets:
        row = [s, str(results["results"][methods[0]][s].get("n", ""))]
        for m in methods:
            for k in metrics:
                v = results["results"][m][s][k]
                txt = f"{v * 100:.1f}"
                row.append(f"[bold]{txt}[/]" if several and v == best[(s, k)] else txt)
        table.add_row(*row, end_section=(s == sets[-2]) if len(sets) > 1 else False)
    return table

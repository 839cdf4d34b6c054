"""Rich renderings of results: the OOD table (methods side by side, best per column in bold)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

LOWER_IS_BETTER = {"fpr95"}
COLUMNS = (("fpr95", "FPR95↓"), ("auroc", "AUROC↑"), ("aupr_in", "AUPR-In↑"), ("aupr_out", "AUPR-Out↑"))


def results_table(results: dict[str, Any], metrics: tuple[str, ...] | None = None) -> Table:
    """Rows: OOD sets and their mean; columns grouped by method. With one method all four metrics show,
    with several FPR95 and AUROC (the comparison people read)."""
    methods = list(results["results"])
    if metrics is None:
        metrics = tuple(k for k, _ in COLUMNS) if len(methods) == 1 else ("fpr95", "auroc")
    labels = dict(COLUMNS)
    acc = results.get("id_test_accuracy")
    title = f"OOD detection — ID {results['id_dataset']} ({results['n_id']} test images"
    title += f", accuracy {acc * 100:.1f}%)" if acc is not None else ")"
    table = Table(title=title, caption=results.get("caption", "") + "; values in %", title_justify="left")
    table.add_column("OOD set", style="bold")
    table.add_column("n", justify="right")
    for m in methods:
        for k in metrics:
            table.add_column(f"{m}\n{labels[k]}" if len(methods) > 1 else labels[k], justify="right")
    sets = list(results["results"][methods[0]])
    best = {}
    for k in metrics:
        for s in sets:
            vals = [results["results"][m][s][k] for m in methods]
            best[(s, k)] = min(vals) if k in LOWER_IS_BETTER else max(vals)
    for s in sets:
        row = [s if s != "mean" else "mean", str(results["results"][methods[0]][s].get("n", ""))]
        for m in methods:
            for k in metrics:
                v = results["results"][m][s][k]
                txt = f"{v * 100:.1f}"
                row.append(f"[bold]{txt}[/]" if len(methods) > 1 and v == best[(s, k)] else txt)
        table.add_row(*row, end_section=(s == sets[-2]) if len(sets) > 1 else False)
    return table

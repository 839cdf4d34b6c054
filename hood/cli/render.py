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
    bench = results.get("benchmark") or {}
    lead = f"benchmark {bench['name']} ({bench['split']} split), its own convention {bench['fpr_convention']}; " if bench else ""
    return f"{lead}--fpr-convention {conv}. {results.get('caption', '')}; values in %; best of each column in bold"


def results_table(results: dict[str, Any], metrics: tuple[str, ...] | None = None, width: int | None = None) -> Table | Group:
    """Rows: OOD sets and their mean; columns grouped by method. With one method all four metrics show,
    with several FPR95 and AUROC (the comparison people read). Too many methods for ``width`` columns
    split into several tables of the same rows, rather than squeezing numbers into wrapped cells."""
    methods = list(results["results"])
    if metrics is None:
        metrics = tuple(k for k, _ in COLUMNS) if len(methods) == 1 else ("fpr95", "auroc")
    rows = _rows(results, methods)
    best = _best(rows, metrics)
    if width is None:
        from hood.cli.options import stdout

        width = stdout.width
    n_w = max(len(str(row[methods[0]].get("n", ""))) for _, row in rows)
    label_w = 1 + (max(len(x) for x in [*(label for label, _ in rows), "OOD set"]) + 3) + (max(n_w, 1) + 3)  # borders, padding
    chunks: list[list[str]] = [[]]
    used = label_w
    for m in methods:
        w = len(metrics) * (max(len(m), 6) + 3)  # "FPR95↓" / "100.0" / the method name, padding, rule
        if chunks[-1] and used + w > width:
            chunks.append([])
            used = label_w
        chunks[-1].append(m)
        used += w
    notes = [Text(f"note: {n}", style="yellow") for n in results.get("notes", [])]  # a constant detector, kept thresholds
    if len(chunks) == 1:
        table = _table(results, methods, metrics, best, True, caption(results))
        return Group(table, *notes) if notes else table
    tables = [_table(results, chunk, metrics, best, i == 0, None) for i, chunk in enumerate(chunks)]
    return Group(*tables, Text(caption(results), style="dim italic"), *notes)


def _rows(results: dict[str, Any], methods: list[str]) -> list[tuple[str, dict[str, dict[str, float]]]]:
    """The table's rows, each ``(label, {method: metrics})``: every set, each group's mean (a benchmark's near and
    far), then the mean over all sets."""
    per, groups = results["results"], results.get("groups") or {}
    rows = [(s, {m: per[m][s] for m in methods}) for s in per[methods[0]] if s != "mean"]
    rows += [(f"{g} (mean)", {m: groups[m][g] for m in methods}) for g in groups.get(methods[0], {})]
    if "mean" in per[methods[0]]:
        rows.append(("mean", {m: per[m]["mean"] for m in methods}))
    return rows


def _best(rows: list[tuple[str, dict[str, dict[str, float]]]], metrics: tuple[str, ...]) -> dict[tuple[str, str], float]:
    """The best value per (row, metric) across methods: what bold marks in each metric column group."""
    best = {}
    for label, row in rows:
        for k in metrics:
            vals = [v[k] for v in row.values()]
            best[(label, k)] = min(vals) if k in LOWER_IS_BETTER else max(vals)
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
    rows = _rows(results, list(results["results"]))
    labels_in_order = [label for label, _ in rows]
    for i, (label, per) in enumerate(rows):
        cells = [label, str(per[methods[0]].get("n", ""))]
        for m in methods:
            for k in metrics:
                v = per[m][k]
                txt = f"{v * 100:.1f}"
                cells.append(f"[bold]{txt}[/]" if several and v == best[(label, k)] else txt)
        last_set = i + 1 < len(rows) and labels_in_order[i + 1].endswith(" (mean)") and not label.endswith(" (mean)")
        table.add_row(*cells, end_section=last_set or (i == len(rows) - 2 and len(rows) > 1))
    return table


def localization_tables(results: dict[str, Any]) -> Group:
    """Two tables of ``hood evaluate --localization``: per set, each pixel map's pixel AUROC and AUPRO (where the
    heatmap points), then each method's image-level figures on the composites (whether it notices them)."""
    from hood.data.sources import dataset_label

    sets = list(results["sets"])
    maps = results["maps"]
    kind = "validation" if "validation" in results else "test"
    pixel = Table(title=f"Localization — ID {dataset_label(results['id_dataset'])} ({results['n_id']} {kind} images) with a "
                        f"region of each set pasted in", title_justify="left",
                  caption="pixel AUROC: every pixel of every composite, pasted = positive; AUPRO: overlap "
                          "with each pasted region up to 30% FPR, 15 = chance; rect / blob: pixel AUROC per shape; values in %; "
                          "best per set in bold",
                  caption_justify="left")
    for col in ("pasted from", "n", "map", "pixel AUROC↑", "AUPRO↑", "rect", "blob"):
        text = col in ("pasted from", "map")
        pixel.add_column(col, justify="left" if text else "right", style="bold" if col == "pasted from" else None,
                         overflow="fold" if text else "ellipsis", no_wrap=col == "map", min_width=19 if col == "map" else None)
    for name in [*sets, "mean"] if len(sets) > 1 else sets:
        vals = results["mean"]["maps"] if name == "mean" else results["sets"][name]["maps"]
        n = sum(s["n"] for s in results["sets"].values()) if name == "mean" else results["sets"][name]["n"]
        best = {k: max(vals[m][k] for m in maps) for k in ("pixel_auroc", "aupro")}
        for i, m in enumerate(maps):
            cells = [f"[bold]{vals[m][k] * 100:.1f}[/]" if vals[m][k] == best[k] else f"{vals[m][k] * 100:.1f}"
                     for k in ("pixel_auroc", "aupro")]
            shapes = [f"{vals[m][k] * 100:.1f}" if k in vals[m] else "" for k in ("pixel_auroc_rectangle", "pixel_auroc_blob")]
            pixel.add_row(name if i == 0 else "", str(n) if i == 0 else "", m, *cells, *shapes, end_section=i == len(maps) - 1)
    detection = {"id_dataset": results["id_dataset"], "n_id": results["n_id"], "fpr_convention": results["fpr_convention"],
                 "caption": results["caption"] + " (composites = OOD)",
                 "results": {m: {**{n: {**s["detection"][m], "n": s["n"]} for n, s in results["sets"].items()},
                                 "mean": {**results["mean"]["detection"][m], "n": sum(s["n"] for s in results["sets"].values())}}
                             for m in results["methods"]}}
    if "validation" in results:
        detection["validation"] = results["validation"]
    return Group(pixel, Text(""), results_table(detection))

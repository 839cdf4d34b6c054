"""How ``hood score`` prints its verdicts: a table on a terminal, with paths folded onto more lines rather than
cut; tab-separated rows when stdout is a pipe or a file, whole, one image a line, for ``cut`` and ``awk``."""

from __future__ import annotations

import sys
from typing import Any

from rich.markup import escape
from rich.table import Table

from hood.cli.errors import err_console, printable
from hood.cli.options import stdout

COLUMNS = ("file", "class", "OOD score", "verdict")
STYLE = {"in": "green", "out": "bold red", "?": "yellow", "unreadable": "dim"}


def heading(result: Any, why: str | None) -> str:
    """Which run and method the verdicts are of, and the threshold they apply."""
    thr = "none" if result.threshold is None else f"{result.threshold:.4g}"
    chosen = f" ({why})" if why else ""
    return f"{result.method}{chosen} scores of {result.run}, out above {thr}"


def print_scores(result: Any, why: str | None = None) -> None:
    """The verdicts of ``result`` (a :class:`hood.jobs.score.ScoreResult`); ``why`` says why its method was chosen."""
    if not stdout.is_terminal:
        err_console.print(escape(printable(heading(result, why))))
        lines = ["\t".join(COLUMNS)]
        for i in result.images:
            verdict = i.verdict + (f" ({i.error})" if i.error else "")
            cells = (i.file, i.predicted_class or "-", "-" if i.score is None else f"{i.score:.4f}", verdict)
            lines.append("\t".join(printable(c) for c in cells))  # a tab or newline in a name stays escaped
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        return
    table = Table(title=escape(printable(heading(result, why))), title_justify="left")
    for col in COLUMNS:
        table.add_column(col, justify="right" if col == "OOD score" else "left", overflow="fold")
    for i in result.images:
        verdict = f"[{STYLE[i.verdict]}]{i.verdict}[/]" + (f" [dim]({escape(printable(i.error))})[/]" if i.error else "")
        table.add_row(escape(printable(i.file)), escape(printable(i.predicted_class or "-")),
                      "-" if i.score is None else f"{i.score:.4f}", verdict)
    stdout.print(table)

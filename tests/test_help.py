"""``--help`` stays readable on an 80-column terminal: no option's help runs past two lines."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hood.cli.app import app

COMMANDS = ["pretrain", "train-decoder", "evaluate", "visualize", "score", "download", "demo"]


def panel_rows(text: str) -> dict[str, int]:
    """Each row of the help's panels (options, arguments, commands) by its first word, with its line count.

    A panel line is ``│ <cells> │``; a row starts where the first cell holds text (an option name, the
    required marker, an argument or a command), and its help continues on lines whose first cell is blank.
    """
    rows: dict[str, int] = {}
    current = None
    for line in text.splitlines():
        if not line.startswith("│ ") or len(line) < 3:
            current = None
            continue
        if line[2] != " ":
            current = line[2:].split()[0] if line[2] != "*" else line[3:].split()[0]
            rows[current] = 1
        elif current is not None:
            rows[current] += 1
    return rows


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_help_line_fits_two_lines_of_an_80_column_terminal(command: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer.rich_utils

    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", 80)  # read from $TERMINAL_WIDTH when typer was imported
    args = ["--help"] if command is None else [command, "--help"]
    out = CliRunner().invoke(app, args, env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert out.exit_code == 0, out.output
    assert max(len(line) for line in out.output.splitlines()) <= 80, "not rendered at 80 columns"
    rows = panel_rows(out.output)
    assert "--help" in rows  # the panels were found
    long = {name: n for name, n in rows.items() if n > 2}
    assert not long, f"hood {command or ''} --help: these wrap past two lines at 80 columns: {long}"

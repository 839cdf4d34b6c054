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


def _help(*args: str) -> str:
    out = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert out.exit_code == 0, out.output
    return out.output


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_flags_show_no_value_type(command: str | None) -> None:
    assert "<bool>" not in _help(*([command] if command else []))


@pytest.mark.parametrize("command,shown", [
    ("train-decoder", ["[default: 150]", "[default: 10000]", "[default: 1]", "[default: tinyimages300k]", "[default: cifar10]"]),
    ("pretrain", ["[default: 100]", "[default: 0.1]", "[default: resnet18]", "[default: auto]"]),
    ("evaluate", ["(default: heatmap,msp,energy,knn)", "(default: svhn,lsun-c,lsun-r,isun,textures,places365)", "[default: id]"]),
])
def test_config_backed_options_name_their_defaults(command: str, shown: list[str]) -> None:
    text = " ".join(_help(command).split())
    missing = [s for s in shown if s not in text]
    assert not missing, f"hood {command} --help does not show {missing}"
    assert "a config (-c) sets its own" in text


def test_jargon_flags_are_explained() -> None:
    decoder = " ".join(_help("train-decoder").split())
    assert "--fw-layers is how many of the classifier's feature maps it reads" in decoder
    evaluate = " ".join(_help("evaluate").split())
    assert "--validation scores the validation split" in evaluate and "--fpr-convention id (the paper's)" in evaluate


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["score", "--help"], ["train-decoder", "--help"]])
def test_help_and_version_start_without_torch(args: list[str]) -> None:
    """torch costs seconds to import; asking how to use hood must not wait for it."""
    import subprocess
    import sys

    code = ("import sys; from hood.cli.app import app\n"
            f"try: app({args!r})\nexcept SystemExit: pass\n"
            "sys.stderr.write('TORCH ' + str('torch' in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stderr.strip().endswith("TORCH False"), proc.stderr[-2000:]
    assert proc.stdout.strip()


def test_evaluate_help_names_every_method() -> None:
    from hood.detectors import all_methods

    out = CliRunner().invoke(app, ["evaluate", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    said = {w.strip(" ,.():│") for w in out.output.split()}
    assert set(all_methods()) <= said, set(all_methods()) - said


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "download"])
def test_the_set_example_is_one_each_command_takes(command: str) -> None:
    """--set's help shows a key every command accepts: evaluate, score and visualize refuse training keys."""
    import re

    out = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    example = re.search(r"e\.g\. ([a-z_]+\.[a-z_.]+)=", out.output)
    assert example is not None, out.output
    assert example.group(1).split(".")[0] not in ("decoder", "pretrain"), example.group(0)

"""The ``hood`` command: one Typer app assembled from one module per subcommand."""

from __future__ import annotations

import typer

from hood.cli.demo import demo
from hood.cli.download import download
from hood.cli.evaluate import evaluate
from hood.cli.help import Command, Group
from hood.cli.pretrain import pretrain
from hood.cli.score import score
from hood.cli.train_decoder import train_decoder
from hood.cli.visualize import visualize
from hood.version import __version__

app = typer.Typer(
    name="hood",
    cls=Group,
    help="Heatmap-based out-of-distribution detection (Hornauer & Belagiannis, WACV 2023).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hood {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Heatmap-based OOD detection: pretrain, train-decoder, evaluate, visualize, score, download, demo."""


app.command("pretrain", cls=Command)(pretrain)
app.command("train-decoder", cls=Command)(train_decoder)
app.command("evaluate", cls=Command)(evaluate)
app.command("visualize", cls=Command)(visualize)
app.command("score", cls=Command)(score)
app.command("download", cls=Command)(download)
app.command("demo", cls=Command)(demo)


def main() -> None:
    app()

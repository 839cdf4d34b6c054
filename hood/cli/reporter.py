"""A Rich implementation of the engine's Reporter: progress bars and log lines on stderr."""

from __future__ import annotations

from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from hood.cli.errors import err_console


class RichReporter:
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
            disable=quiet,
        )

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def task(self, description: str, total: int | None) -> Any:
        return self.progress.add_task(description, total=total, info="")

    def advance(self, task: Any, n: int = 1, **fields: Any) -> None:
        info = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
        self.progress.update(task, advance=n, info=info)

    def done(self, task: Any) -> None:
        self.progress.remove_task(task)

    def log(self, message: str) -> None:
        if not self.quiet:
            self.progress.console.print(f"[dim]{message}[/]")

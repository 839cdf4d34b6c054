"""A Rich implementation of the engine's Reporter: progress bars and log lines on stderr."""

from __future__ import annotations

from typing import Any

from hood.cli.errors import err_console
from hood.progress import BarReporter


class RichReporter(BarReporter):
    """The CLI's bars vanish when done (the table follows), log lines go between them, ``quiet`` silences both."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        super().__init__(err_console, transient=True, disable=quiet)

    def __enter__(self) -> RichReporter:
        super().__enter__()
        return self

    def done(self, task: Any) -> None:
        self.progress.remove_task(task)

    def log(self, message: str) -> None:
        if not self.quiet:
            self.progress.console.print(f"[dim]{message}[/]")

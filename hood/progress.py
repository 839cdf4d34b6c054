"""How the engine reports progress without printing: the CLI passes a Reporter that draws with Rich."""

from __future__ import annotations

from typing import Any, Protocol


class Reporter(Protocol):
    def task(self, description: str, total: int | None) -> Any: ...
    def advance(self, task: Any, n: int = 1, **fields: Any) -> None: ...
    def done(self, task: Any) -> None: ...
    def log(self, message: str) -> None: ...


class NullReporter:
    """Reports nothing; the default for library use and the tests."""

    def task(self, description: str, total: int | None) -> Any:
        return None

    def advance(self, task: Any, n: int = 1, **fields: Any) -> None:
        pass

    def done(self, task: Any) -> None:
        pass

    def log(self, message: str) -> None:
        pass


class BarReporter:
    """Progress bars with the time left, on stderr (a notebook shows them inline), for the Python API's long
    calls; log lines are left out, the bars say how far it is. Use it as a context manager. The command line's
    reporter is this one with log lines, bars that vanish when done, and a quiet switch."""

    def __init__(self, console: Any = None, transient: bool = False, disable: bool = False) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=console or Console(stderr=True, highlight=False), transient=transient,
                                 disable=disable)

    def __enter__(self) -> BarReporter:
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
        self.progress.update(task, completed=self.progress.tasks[task].total or 0)  # the bar stays, full

    def log(self, message: str) -> None:
        pass

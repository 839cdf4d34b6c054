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

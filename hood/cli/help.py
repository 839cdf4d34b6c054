"""How ``--help`` reads: a flag shows no value type (it takes none), and a config-backed option names its default."""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand, TyperGroup

from hood.config import Config

_DEFAULTS = Config()
# what every command's help says once, so each option's line can stay short
DEFAULTS_NOTE = "Defaults shown are hood's own; a config (-c) sets its own, and --set any key."


def default_of(key: str) -> str:
    """The dataclass default of ``section.key`` as a user would type it (lists comma-separated)."""
    section, name = key.split(".")
    value = getattr(getattr(_DEFAULTS, section), name)
    if isinstance(value, bool):
        return str(value).lower()
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def with_default(text: str, key: str) -> str:
    """An option's help followed by its config key's default, the way Typer shows a plain default."""
    return f"{text} \\[default: {default_of(key)}]"


def _plain_flags(params: list[Any]) -> list[Any]:
    for p in params:
        if getattr(p, "is_flag", False) and p.metavar is None:
            p.metavar = ""  # Typer would print <bool> beside every flag
    return params


class Command(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_flags(super().get_params(ctx))


class Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_flags(super().get_params(ctx))


def filled(**values: str) -> Any:
    """Fill a command docstring's ``{note}`` (:data:`DEFAULTS_NOTE`) and ``values``: the defaults it names come
    from the config's dataclasses, never a copy."""

    def fill(fn: Any) -> Any:
        fn.__doc__ = (fn.__doc__ or "").format(note=DEFAULTS_NOTE, **values)
        return fn

    return fill

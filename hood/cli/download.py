"""``hood download``: the data-set registry and its install state."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hood.cli.errors import fail, handle_errors
from hood.cli.options import JsonOpt, print_json, stdout


@handle_errors()
def download(
    names: Annotated[list[str] | None, typer.Argument(help="Data sets to fetch.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="Show every registered set and whether it is installed.")] = False,
    root: Annotated[str | None, typer.Option("--root", help="Data root (default: $HOOD_DATA or ~/.local/share/hood).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Fetch data sets into the data root, verified against the registry's checksums."""
    from hood.data import registry

    base = registry.resolve_root(root)
    if list_ or not names:
        rows = []
        for name in registry.registry_names():
            e = registry.entry(name) or {}
            present = registry.is_installed(name, base)
            rows.append({"name": name, "role": e.get("role"), "title": e.get("title"), "installed": present, "path": str(registry.set_dir(name, base))})
        if json_out:
            print_json(rows)
            return
        table = Table(title=f"data sets under {base}")
        for col in ("name", "role", "state", "path"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["name"], r["role"], "[green]present[/]" if r["installed"] else "[dim]missing[/]", r["path"])
        stdout.print(table)
        return
    raise fail("fetching is not available in this build; install sets by hand under the data root")

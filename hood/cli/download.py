"""``hood download``: fetch registered data sets, verified, into the data root; list and re-verify them.

Progress (bytes, speed, ETA per file) goes to stderr, results to stdout. The data root is ``--root``, else
``$HOOD_DATA``, else ``$XDG_DATA_HOME/hood`` (``~/.local/share/hood``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from hood.cli.benchmarks import benchmark_rows, download_plan_lines
from hood.cli.benchmarks import human as _human
from hood.cli.errors import err_console, handle_errors
from hood.cli.options import JsonOpt, QuietOpt, print_json, stdout
from hood.cli.reporter import RichReporter
from hood.errors import DataError, HoodError


class ByteProgress(RichReporter):
    """The engine's Reporter with byte columns (size, speed, ETA): one bar per file on stderr."""

    def __init__(self, quiet: bool = False) -> None:
        super().__init__(quiet)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
            disable=quiet or not err_console.is_terminal,  # no bar redraws in logs or pipes
        )


def _url_overrides(values: list[str], names: list[str]) -> dict[str, str]:
    """``--url NAME=URL`` (repeatable), or a bare ``--url URL`` when exactly one set is named."""
    from hood.data import registry
    from hood.data.download import check_url

    out: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if sep and registry.entry(key) is not None and "://" not in key:
            name, url = registry.canonical(key) or key, rest
        elif len(names) == 1:
            name, url = names[0], value
        else:
            raise DataError(f"--url {value}: with several sets, write --url NAME=URL")
        if name in out:
            raise DataError(f"--url names {name} twice ({out[name]} and {url}); give one URL per set")
        out[name] = check_url(url, "--url")
    return out


def _list_rows(base: Path) -> list[dict[str, Any]]:
    from hood.data import download as dl
    from hood.data import registry

    rows = []
    for name in registry.registry_names():
        e = registry.entry(name) or {}
        size = sum(f.get("size") or 0 for f in e["files"]) if all(f.get("size") for f in e["files"]) else None
        state = "present" if registry.is_installed(name, base) else "missing"
        partial = dl.partial_bytes(name, base)
        rows.append({"name": name, "aliases": registry.aliases(name), "role": e.get("role"), "size": size, "state": state,
                     "partial_bytes": partial, "path": str(registry.set_dir(name, base)), "title": e.get("title")})
    for name in registry.manual_names():
        m = registry.manual_entry(name) or {}
        rows.append({"name": name, "aliases": [], "role": m.get("role"), "size": None, "state": "manual", "partial_bytes": 0, "path": m.get("url"), "title": m.get("title")})
    for b in benchmark_rows(base):  # a benchmark downloads as the sets it reads
        size = None if b["size_unknown"] else b["size"]
        rows.append({"name": b["name"], "aliases": [], "role": "benchmark", "size": size, "state": b["state"], "partial_bytes": 0,
                     "path": "sets: " + ", ".join(b["needs"]), "title": b["title"]})
    return rows


_STYLE = {"present": "green", "verified": "bold green", "missing": "dim", "manual": "yellow", "modified": "bold red", "unrecorded": "yellow"}


def _print_table(rows: list[dict[str, Any]], title: str) -> None:
    table = Table(title=title)
    for col in ("name", "role", "size", "state", "path"):
        table.add_column(col, overflow="fold")
    for r in rows:
        state = f"[{_STYLE.get(r['state'], 'white')}]{r['state']}[/]"
        if r.get("partial_bytes"):
            state += f" ({_human(r['partial_bytes'])} downloaded; resumes)"
        if r.get("detail"):
            state += f": {r['detail']}"
        name = r["name"] + "".join(f" [dim](or {a})[/]" for a in r.get("aliases") or [])
        table.add_row(name, r["role"] or "", _human(r["size"]), state, r["path"] or "")
    stdout.print(table)


def _verify(names: list[str], base: Path, json_out: bool) -> None:
    from hood.data import download as dl
    from hood.data import registry

    rows = []
    for name in names or [n for n in registry.registry_names() if registry.is_installed(n, base)]:
        r = dl.verify_installed(name, base)
        rows.append({"name": name, "role": (registry.entry(name) or {}).get("role"), "size": None, "state": r.state, "detail": r.detail, "path": str(r.path)})
    if json_out:
        print_json(rows)
    else:
        _print_table(rows, f"verification under {base}" if rows else f"no installed sets under {base}")
    bad = [r["name"] for r in rows if r["state"] in ("modified", "missing")]
    if bad:
        raise DataError(f"{len(bad)} set(s) failed verification: {', '.join(bad)}; reinstall with `hood download {' '.join(bad)} --force`")


def _expand_benchmarks(names: list[str], base: Path) -> tuple[list[str], list[str]]:
    """A benchmark's name stands for the sets it reads; returns the names and the lines saying what it will fetch."""
    from hood.data import benchmarks, registry

    out: list[str] = []
    plan: list[str] = []
    for name in names:
        if registry.entry(name) is None and benchmarks.find(name) is not None:
            out += benchmarks.get(name).needs()
            plan += download_plan_lines(name, base)
        else:
            out.append(name)
    return out, plan


@handle_errors(resume_hint=lambda: "rerun the same command: finished sets are kept and the partial download resumes")
def download(
    names: Annotated[list[str] | None, typer.Argument(help="Data sets or benchmarks to fetch (see --list).", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Fetch every registered set.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="Show every registered set and benchmark, its size and whether it is present.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Re-check installed sets (the named ones, else all) against their install record.")] = False,
    root: Annotated[str | None, typer.Option("--root", help="Data root (default: $HOOD_DATA, else ~/.local/share/hood).")] = None,
    url: Annotated[list[str] | None, typer.Option("--url", help="Download from this URL instead: NAME=URL (repeatable), or URL with one NAME.")] = None,
    from_: Annotated[Path | None, typer.Option("--from", help="Install NAME from a local copy of its archive/file (verified the same way).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Reinstall even if the set is present.")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fetch data sets into the data root, verified against the registry's checksums and unpacked safely.

    Mirrors: --url for one set, or HOOD_MIRROR=BASE_URL to fetch every file as BASE_URL/<file name>.
    A benchmark's name (paper-cifar10, openood-cifar10, ...) fetches every set it reads, sizes listed first.
    """
    from hood.data import download as dl
    from hood.data import registry

    base = registry.resolve_root(root)
    names = list(names or [])
    if all_:
        names = registry.registry_names()
    names, plan = _expand_benchmarks(names, base)
    for name in names:
        if registry.entry(name) is None:
            dl.file_specs(name)  # raises the one-line "cannot be fetched" / "unknown set" error
    names = list(dict.fromkeys(registry.canonical(n) or n for n in names))  # aliases as their sets, once each
    if verify:
        return _verify(names, base, json_out)
    if list_ or not names:
        rows = _list_rows(base)
        if json_out:
            print_json(rows)
        else:
            _print_table(rows, f"data sets under {base}")
        return
    if from_ is not None and len(names) != 1:
        raise DataError("--from installs exactly one set: hood download NAME --from FILE")
    overrides = _url_overrides(url or [], names)
    if plan and not (quiet or json_out):
        for line in plan:
            err_console.print(line, highlight=False)
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    with ByteProgress(quiet or json_out) as reporter:
        for name in names:
            try:
                r = dl.install(name, base, url=overrides.get(name), from_file=from_, force=force, reporter=reporter)
            except HoodError as err:
                if len(names) == 1:
                    raise
                failures.append(name)
                err_console.print(f"[bold red]error:[/] {err}", highlight=False)
                continue
            results.append({"name": r.name, "state": r.state, "path": str(r.path), "source": r.source})
            if not json_out:
                word = "[green]installed[/]" if r.state == "installed" else "[dim]present, skipped[/]"
                stdout.print(f"{r.name}: {word}  {r.path}")
    if json_out:
        print_json(results)
    if failures:
        raise HoodError(f"{len(failures)} of {len(names)} sets failed: {', '.join(failures)} (see above); rerun to retry them")

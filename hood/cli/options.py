"""Options shared by several commands, and turning them into a resolved Config."""

from __future__ import annotations

import json
import re
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from hood.cli.help import with_default
from hood.config import Config, resolve

if TYPE_CHECKING:
    from importlib.abc import Traversable

ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", help="YAML file, or a bundled config's name."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="KEY=VALUE", help="Set a config key, e.g. run.num_threads=2."),
]
DeviceOpt = Annotated[str | None, typer.Option("--device", help=with_default("auto, cpu, cuda or cuda:N.", "run.device"))]
SeedOpt = Annotated[int | None, typer.Option("--seed", help=with_default("Random seed.", "run.seed"))]
DataRootOpt = Annotated[str | None, typer.Option("--data-root", help="Where named data sets live (or $HOOD_DATA).")]
OutOpt = Annotated[str | None, typer.Option("--out", help="Run directory (default: a new one in runs/).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON results on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or log lines.")]
StrictOpt = Annotated[bool | None, typer.Option("--strict/--no-strict", help="Fail on unreadable images (default: skip).")]
CompileOpt = Annotated[bool | None, typer.Option("--compile/--no-compile", help="Compile the model first: pays off on long GPU runs.")]
DatasetOpt = Annotated[str | None, typer.Option("--dataset", "-d", help=with_default("ID set: a name, folder or archive.", "data.id"))]

stdout = Console(highlight=False)


def bundled_configs() -> dict[str, Path]:
    """Configs shipped with hood by name: the path under configs/ without ``.yaml`` (``cifar10_resnet18``,
    ``paper/cifar10_resnet18``). A wheel installs that folder as ``hood.configs``; an editable install does
    not map that subpackage, so a source checkout's folder is read directly."""
    checkout = Path(__file__).resolve().parents[2] / "configs"
    if checkout.is_dir():
        return {p.relative_to(checkout).with_suffix("").as_posix(): p for p in sorted(checkout.rglob("*.yaml"))}
    try:
        folder = resources.files("hood.configs")
    except ModuleNotFoundError:
        return {}
    found: dict[str, Path] = {}
    pending: list[tuple[str, Traversable]] = [("", folder)]
    while pending:
        prefix, here = pending.pop()
        for entry in here.iterdir():
            if entry.is_dir():
                pending.append((f"{prefix}{entry.name}/", entry))
            elif entry.name.endswith(".yaml"):
                found[prefix + entry.name[: -len(".yaml")]] = Path(str(entry))
    return dict(sorted(found.items()))


def config_path(spec: str | None) -> str | None:
    """A file as given, else the bundled config of that name (``paper/cifar10_resnet18``, ``.yaml`` optional):
    a folder that happens to share a bundled config's name (``demo/``) never shadows it."""
    if spec is None or Path(spec).is_file():
        return spec
    bundled = bundled_configs()
    name = spec.removesuffix(".yaml").replace("\\", "/")
    return str(bundled[name]) if name in bundled else spec  # else resolve() reports the missing file


def bundled_config(name: str) -> str:
    """The bundled config ``name``'s file, whatever the working directory holds (``hood demo`` reads its own)."""
    return str(bundled_configs()[name])


def build_config(config: str | None, named: dict[str, Any], sets: list[str] | None) -> Config:
    """Resolve the config; without a file, runs are named ``<dataset>_<arch>`` so that pretrain,
    train-decoder and evaluate given the same options find each other's runs."""
    cfg = resolve(config_path(config), named, sets)
    if config is None:
        from hood.data.sources import dataset_label

        cfg.name = re.sub(r"[/:\\]", "_", f"{dataset_label(cfg.data.id)}_{cfg.model.arch}")
    return cfg


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()

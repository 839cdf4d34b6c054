"""Options shared by several commands, and turning them into a resolved Config."""

from __future__ import annotations

import json
import re
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from hood.config import Config, resolve

ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", help="YAML config: a path, or the name of a bundled one (e.g. cifar10_resnet18, demo)."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override any config key: --set decoder.lr=1e-4 (repeatable; wins over everything)."),
]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda | cuda:N (auto = CUDA when present).")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed (sampling, shuffles, initialization).")]
DataRootOpt = Annotated[str | None, typer.Option("--data-root", help="Where named data sets live (default: $HOOD_DATA or ~/.local/share/hood).")]
OutOpt = Annotated[str | None, typer.Option("--out", help="Run directory to write (default: runs/<config>-<command>-<time>).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable results on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or log lines.")]

stdout = Console(highlight=False)


def bundled_configs() -> dict[str, Path]:
    """Configs shipped with hood: the repo's configs/ folder, installed as ``hood.configs`` in a wheel.

    An editable install does not map that subpackage, so a source checkout's folder is read directly.
    """
    checkout = Path(__file__).resolve().parents[2] / "configs"
    if checkout.is_dir():
        return {p.stem: p for p in sorted(checkout.glob("*.yaml"))}
    try:
        folder = resources.files("hood.configs")
    except ModuleNotFoundError:
        return {}
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def config_path(spec: str | None) -> str | None:
    """A path as given, else a bundled config of that name."""
    if spec is None or Path(spec).exists():
        return spec
    bundled = bundled_configs()
    name = Path(spec).stem
    if name in bundled and not Path(spec).parent.name:
        return str(bundled[name])
    return spec  # let resolve() report the missing file


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

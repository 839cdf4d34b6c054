"""The data-set registry: names, roles and on-disk layouts from ``manifest.json``, and the data root.

This module is what the loaders need (where a named set lives and whether it is installed). Fetching,
verifying and unpacking belong to :mod:`hood.data.download`, driven by the same manifest.
"""

from __future__ import annotations

import difflib
import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

COMPLETE_MARKER = ".hood-complete"


@lru_cache(maxsize=1)
def load_manifest() -> dict[str, Any]:
    return json.loads(resources.files("hood.data").joinpath("manifest.json").read_text())


def registry_names() -> list[str]:
    return sorted(load_manifest()["sets"])


def entry(name: str) -> dict[str, Any] | None:
    return load_manifest()["sets"].get(name)


def manual_names() -> list[str]:
    """Entries hood lists but cannot fetch (e.g. the authors' weights behind a browser-only share)."""
    return sorted(load_manifest().get("manual", {}))


def manual_entry(name: str) -> dict[str, Any] | None:
    return load_manifest().get("manual", {}).get(name)


def default_data_root() -> Path:
    """``$HOOD_DATA``, else ``$XDG_DATA_HOME/hood`` (``~/.local/share/hood``)."""
    if os.environ.get("HOOD_DATA"):
        return Path(os.environ["HOOD_DATA"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "hood"


def resolve_root(root: str | os.PathLike | None) -> Path:
    return Path(root).expanduser() if root else default_data_root()


def set_dir(name: str, root: Path) -> Path:
    e = entry(name)
    if e is None:
        raise KeyError(name)
    return root / e["dir"]


def _cifar_files_present(d: Path) -> bool:
    names = ("data_batch_1", "test_batch") if d.name.startswith("cifar-10") else ("train", "test")
    return all((d / n).is_file() for n in names)


def is_installed(name: str, root: Path) -> bool:
    """A set counts as present only when complete: hood's marker, or torchvision's own CIFAR files."""
    d = set_dir(name, root)
    if (d / COMPLETE_MARKER).is_file():
        return True
    e = entry(name) or {}
    return e.get("layout") == "cifar-python" and _cifar_files_present(d)


def read_marker(name: str, root: Path) -> dict[str, Any] | None:
    """The verification record ``hood download`` wrote into the set's marker, or None (absent/unreadable)."""
    try:
        record = json.loads((set_dir(name, root) / COMPLETE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def suggest(name: str, extra: list[str] | tuple[str, ...] = ()) -> str:
    """' (did you mean X?)' for the closest known name, or ''."""
    close = difflib.get_close_matches(name, registry_names() + manual_names() + list(extra), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""

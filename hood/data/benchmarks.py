"""Named benchmarks (``hood evaluate --benchmark NAME``): protocols the field reports on, held as data in the
registry (``manifest.json``, ``"benchmarks"``) and read and checked here, so a new protocol is an entry, not code.

A benchmark names its ID set, its OOD sets with their groups (near, far) and its FPR convention. An OOD set is
either a registry set, of which the protocol takes len(ID test) / 5 images (the paper's official code), or an
image list of a pack (OpenOOD's ``benchmark_imglist``), all of whose images are scored. A benchmark with lists
also lists its ID test images and may give a validation split (ID val + OOD val lists).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hood.data import registry
from hood.errors import ConfigError

KEYS = ("title", "id", "fpr_convention", "ood", "lists", "id_test", "id_val", "val_ood")
SET_KEYS = ("name", "set", "list", "pack", "group", "count")
CONVENTIONS = ("id", "ood")
RESERVED = ("id", "mean")  # a run's own score and table names
LIST_WORD = "list"  # `hood evaluate --benchmark list` shows them
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class BenchmarkError(ConfigError):
    """A benchmark entry or name that cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class BenchSet:
    """One set a benchmark scores: ``source`` is a registry set (drawn len(ID)/5) or, with ``list``, the pack
    holding the images that list names (all of them)."""

    name: str
    source: str
    list: str | None = None
    group: str | None = None
    count: int | None = None  # the published number of images in the list, where known: a mismatch is noted


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    id: str
    fpr_convention: str
    ood: tuple[BenchSet, ...]
    lists: str | None = None  # the registry set holding the image lists
    id_test: BenchSet | None = None  # None: the ID set's own test split
    id_val: BenchSet | None = None
    val_ood: tuple[BenchSet, ...] = ()

    @property
    def has_validation(self) -> bool:
        return self.id_val is not None and bool(self.val_ood)

    def groups(self) -> dict[str, list[str]]:
        """Group name -> its sets' names, in table order (OpenOOD's near and far)."""
        out: dict[str, list[str]] = {}
        for s in self.ood:
            if s.group:
                out.setdefault(s.group, []).append(s.name)
        return out

    def needs(self, validation: bool | None = None) -> list[str]:
        """The registry sets this benchmark reads: for its test table (``validation`` False), its validation
        split (True) or both (None, what ``hood download NAME`` fetches)."""
        parts: list[BenchSet] = []
        if validation in (False, None):
            parts += [*([self.id_test] if self.id_test else []), *self.ood]
        if validation in (True, None):
            parts += [*([self.id_val] if self.id_val else []), *self.val_ood]
        names = [self.id, *([self.lists] if self.lists and any(p.list for p in parts) else []), *(p.source for p in parts)]
        return list(dict.fromkeys(names))


def names() -> list[str]:
    return list(_entries())


def _entries() -> dict[str, Any]:
    found = registry.load_manifest().get("benchmarks", {})
    return found if isinstance(found, dict) else {}


def find(name: str) -> Benchmark | None:
    """The benchmark called ``name`` (any letter case), checked; None when there is none."""
    e = _entries().get(name.lower())
    return None if e is None else _parse(name.lower(), e)


def get(name: str) -> Benchmark:
    """The benchmark called ``name``; an unknown name is one line listing the known ones."""
    found = find(name)
    if found is None:
        raise BenchmarkError(f"unknown benchmark '{name}'{registry.suggest(name, names())}; benchmarks: {', '.join(names())} "
                             f"(`hood evaluate --benchmark list`)")
    return found


def _parse(name: str, e: Any) -> Benchmark:
    where = f"benchmark '{name}'"

    def fail(what: str) -> BenchmarkError:
        return BenchmarkError(f"{where}: {what}")

    if not isinstance(e, dict):
        raise fail("must be an object of keys " + ", ".join(KEYS))
    for key in e:
        if key not in KEYS:
            raise fail(f"unknown key '{key}'; keys: {', '.join(KEYS)}")
    if registry.canonical(name) is not None:
        raise fail("its name is also a data set's; a benchmark needs a name of its own")
    ident = e.get("id")
    if not isinstance(ident, str) or (registry.entry(ident) or {}).get("role") != "id":
        raise fail(f"'id' must name a registered ID set, got {ident!r}")
    if e.get("fpr_convention") not in CONVENTIONS:
        raise fail(f"fpr_convention must be one of {', '.join(CONVENTIONS)}, got {e.get('fpr_convention')!r}")
    lists = e.get("lists")
    if lists is not None and (registry.entry(lists) or {}).get("layout") != "imglist":
        raise fail(f"'lists' must name a registered set of image lists, got {lists!r}")
    ood = tuple(_parse_set(s, f"{where}, ood[{i}]", lists) for i, s in enumerate(_list_of(e.get("ood"), fail, "ood")))
    val_ood = tuple(_parse_set(s, f"{where}, val_ood[{i}]", lists) for i, s in enumerate(_list_of(e.get("val_ood", []), fail, "val_ood")))
    if not ood:
        raise fail("'ood' must list at least one set")
    id_test = _parse_set({"name": "id", **e["id_test"]}, f"{where}, id_test", lists, True) if "id_test" in e else None
    id_val = _parse_set({"name": "id", **e["id_val"]}, f"{where}, id_val", lists, True) if "id_val" in e else None
    if bool(id_val) != bool(val_ood):
        raise fail("a validation split needs both id_val and val_ood")
    seen: set[str] = set()
    for s in (*ood, *val_ood):
        if s.name in seen or s.name in RESERVED or s.name.startswith("val-"):
            raise fail(f"set name '{s.name}' is taken (names are unique, and not {', '.join(RESERVED)} or val-*)")
        seen.add(s.name)
    for group in {s.group for s in ood if s.group}:
        if group in seen or group in RESERVED:
            raise fail(f"group '{group}' has the name of a set; groups and sets share the table")
    return Benchmark(name, str(e.get("title", name)), ident, e["fpr_convention"], ood, lists, id_test, id_val, val_ood)


def _list_of(value: Any, fail: Any, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise fail(f"'{key}' must be a list of sets")
    return value


def _parse_set(s: Any, where: str, lists: str | None, listed: bool = False) -> BenchSet:
    if not isinstance(s, dict) or any(k not in SET_KEYS for k in s):
        raise BenchmarkError(f"{where}: expected an object of keys {', '.join(SET_KEYS)}")
    name = s.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise BenchmarkError(f"{where}: name must be lower-case letters, digits, '-' or '_', got {name!r}")
    group, count = s.get("group"), s.get("count")
    if group is not None and not (isinstance(group, str) and _NAME_RE.match(group)):
        raise BenchmarkError(f"{where}: group must be a name such as near or far, got {group!r}")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise BenchmarkError(f"{where}: count must be a positive number of images or null, got {count!r}")
    if "list" in s or listed:
        if lists is None:
            raise BenchmarkError(f"{where}: an image list needs the benchmark's 'lists' set")
        rel, pack = s.get("list"), s.get("pack")
        if not isinstance(rel, str) or not rel.endswith(".txt") or rel.startswith("/") or ".." in rel.split("/"):
            raise BenchmarkError(f"{where}: list must be a .txt path inside '{lists}', got {rel!r}")
        if not isinstance(pack, str) or registry.entry(pack) is None:
            raise BenchmarkError(f"{where}: pack must name a registered set of images, got {pack!r}")
        return BenchSet(name, registry.canonical(pack) or pack, rel, group, count)
    source = s.get("set")
    if not isinstance(source, str) or (registry.entry(source) or {}).get("role") != "ood":
        raise BenchmarkError(f"{where}: set must name a registered OOD set, got {source!r}")
    return BenchSet(name, registry.canonical(source) or source, None, group, count)


def list_path(bench: Benchmark, s: BenchSet, root: Path) -> Path:
    """Where the image list of ``s`` lives once its lists set is installed."""
    assert bench.lists is not None and s.list is not None
    return registry.set_dir(bench.lists, root) / s.list


def missing(bench: Benchmark, root: Path, validation: bool | None = False) -> list[str]:
    """The registry sets ``bench`` reads (see :meth:`Benchmark.needs`) that are not installed under ``root``."""
    return [n for n in bench.needs(validation) if not registry.is_installed(n, root)]


def require_installed(bench: Benchmark, root: Path, validation: bool = False) -> None:
    """Stop before any work when a set the benchmark reads is missing: one line naming one download for all."""
    absent = missing(bench, root, validation)
    if absent:
        what = f"'{absent[0]}' is" if len(absent) == 1 else f"{', '.join(repr(a) for a in absent)} are"
        raise BenchmarkError(f"benchmark {bench.name} needs {what} not installed under {root}; run `hood download {bench.name}` "
                             f"(it fetches only what is missing; or pass --data-root / set HOOD_DATA to where they live)")


def size_of(name: str) -> int | None:
    """Bytes of a registry set's download, None where the publisher gives no size."""
    files = (registry.entry(name) or {}).get("files", [])
    return sum(f["size"] for f in files) if files and all(f.get("size") for f in files) else None

"""``hood evaluate --benchmark NAME``: what a named protocol scores, and what its results record.

The protocol fixes the ID rows, the OOD sets and their rows: a registry set gives len(ID test) / 5 of its images
(the paper's official code, drawn by ``data.ood_draw``), an image list all the images it names. Its results carry
each group's mean (OpenOOD's near and far) and the name of the benchmark with the sha256 of every list and
installed file it read, so a figure can be traced to the exact images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hood.config import Config
from hood.data import benchmarks, registry
from hood.data.benchmarks import Benchmark, BenchSet
from hood.data.images import ImageSet
from hood.data.imglist import file_sha256, load_listed, read_list
from hood.data.sources import load_image_set
from hood.errors import ConfigError
from hood.jobs.plan import Plan, finish
from hood.metrics import mean_metrics


def open_benchmark(cfg: Config, validating: bool, root: Path) -> Benchmark | None:
    """The benchmark ``evaluate.benchmark`` names (None without one), checked against this evaluation, with every
    set it reads installed under ``root`` (else one line naming ``hood download NAME``)."""
    if cfg.evaluate.benchmark is None:
        return None
    bench = benchmarks.get(cfg.evaluate.benchmark)
    if validating and not bench.has_validation:
        raise ConfigError(f"the {bench.name} protocol has no validation split, so settings cannot be chosen on it; choose them "
                          f"on hood's: `hood evaluate --validation` without --benchmark (data.val_id_source, docs/benchmarks.md)")
    if registry.canonical(cfg.data.id) != bench.id:
        raise ConfigError(f"benchmark {bench.name} has ID set {bench.id}, but this evaluation's is {cfg.data.id}; evaluate a "
                          f"classifier (and decoder run) trained on {bench.id}, or name the ID set with -d {bench.id}")
    benchmarks.require_installed(bench, root, validating)
    return bench


def benchmark_plan(bench: Benchmark, cfg: Config, splits: dict[str, ImageSet], decoder_rows: torch.Tensor | None, root: Path,
                   size: int, validating: bool) -> Plan:
    """The test split of ``bench`` (its validation split with ``validating``); detectors fit on the ID training split."""
    strict = cfg.data.strict
    if bench.id_test is None:  # the paper's protocol: the whole ID test split, len(ID test)/5 of each OOD set
        sets = [(s.name, lambda s=s: _named(load_image_set(s.source, root, size, strict), s.name)) for s in bench.ood]
        plan = finish(Plan(fit=splits["train"], decoder_rows=decoder_rows, id=splits["test"], ood=sets), cfg)
        plan.benchmark = _record(bench, root, validating, [])
        return plan
    id_spec = bench.id_val if validating else bench.id_test
    assert id_spec is not None
    ood = bench.val_ood if validating else bench.ood
    listed = [id_spec, *ood]
    ident = load_listed(benchmarks.list_path(bench, id_spec, root), registry.set_dir(id_spec.source, root), id_spec.source, size,
                        f"{bench.id}-{'val' if validating else 'test'}", strict, labelled=True)
    sets = [(s.name, _loader(bench, s, root, size, strict)) for s in ood]
    plan = Plan(fit=splits["train"], decoder_rows=decoder_rows, id=ident, ood=sets, ood_count=None,
                validation={"benchmark": bench.name, "split": "validation"} if validating else None)
    plan.id_size = len(plan.id)
    plan.benchmark = _record(bench, root, validating, listed)
    return plan


def _named(s: ImageSet, name: str) -> ImageSet:
    return ImageSet(name, s.images, s.labels, s.classes, s.names, s.skipped)


def _loader(bench: Benchmark, s: BenchSet, root: Path, size: int, strict: bool) -> Callable[[], ImageSet]:
    path, pack = benchmarks.list_path(bench, s, root), registry.set_dir(s.source, root)
    return lambda: load_listed(path, pack, s.source, size, s.name, strict)


def _record(bench: Benchmark, root: Path, validating: bool, listed: list[BenchSet]) -> dict[str, Any]:
    """What results.json says of the benchmark: its name, convention, groups, rule, and what it read."""
    lists: dict[str, dict[str, Any]] = {}
    notes = []
    for s in listed:
        path = benchmarks.list_path(bench, s, root)
        count = len(read_list(path))
        lists[s.list or ""] = {"sha256": file_sha256(path), "images": count}
        if s.count is not None and count != s.count:
            notes.append(f"{bench.name}: {s.list} lists {count:,} images, the published protocol {s.count:,}; "
                         f"another version of the lists?")
    installed = {}
    for name in bench.needs(validating):
        marker = registry.read_marker(name, root) or {}
        installed[name] = [f.get("sha256") for f in marker.get("files", []) if isinstance(f, dict)] or None
    return {
        "name": bench.name,
        "title": bench.title,
        "split": "validation" if validating else "test",
        "fpr_convention": bench.fpr_convention,
        "rule": "every image each list names" if listed else "len(ID test)/5 images of each OOD set (data.ood_draw)",
        "groups": {} if validating else bench.groups(),
        "lists": lists,
        "installed_sha256": installed,  # per set, of the files it was installed from (None: not installed by hood)
        "notes": notes,
    }


def add_groups(results: dict[str, Any], record: dict[str, Any]) -> None:
    """The benchmark's record, its notes, and each group's unweighted mean per method (``results["groups"]``)."""
    results["benchmark"] = {k: v for k, v in record.items() if k != "notes"}
    results["notes"].extend(record["notes"])
    groups = record["groups"]
    if groups:
        results["groups"] = {
            m: {g: {**mean_metrics({s: per_set[s] for s in members}), "n": sum(int(per_set[s]["n"]) for s in members)}
                for g, members in groups.items()}
            for m, per_set in results["results"].items()
        }

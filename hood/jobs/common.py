"""Pieces every job needs: where the data and the classifier are, and how to pick previous runs."""

from __future__ import annotations

from pathlib import Path

import torch

from hood.config import Config
from hood.data import registry
from hood.data.images import ImageSet
from hood.engine.progress import Reporter
from hood.errors import RunError
from hood.models.checkpoint import LoadedClassifier, load_classifier, read_classifier_checkpoint, safe_load
from hood.runs import Run, find_latest, open_run


def data_root(cfg: Config) -> Path:
    return registry.resolve_root(cfg.data.root)


def classifier_path(cfg: Config, reporter: Reporter) -> Path:
    """``model.classifier`` if given, else ``classifier.pt`` of the newest complete pretrain run."""
    if cfg.model.classifier:
        return Path(cfg.model.classifier)
    run, skipped = find_latest(cfg.run.runs_dir, "pretrain", cfg.name)
    if skipped:
        reporter.log(f"skipped {skipped} incomplete pretrain run(s) in {cfg.run.runs_dir}")
    if run is None:
        raise RunError(
            f"no classifier given and no complete pretrain run for '{cfg.name}' in {cfg.run.runs_dir}/; "
            f"pass --classifier PATH or run `hood pretrain` first"
        )
    reporter.log(f"using classifier from {run.path}")
    return run.file("classifier.pt")


def check_classifier(cfg: Config, reporter: Reporter) -> Path:
    """Validate the classifier file (safe load, layout) before any data is touched."""
    path = classifier_path(cfg, reporter)
    read_classifier_checkpoint(path)
    return path


def open_classifier(path: Path, cfg: Config, num_classes: int | None = None) -> LoadedClassifier:
    return load_classifier(path, arch=cfg.model.arch, num_classes=num_classes)


def decoder_run(path: str | None, cfg: Config, reporter: Reporter) -> Run:
    """The train-decoder run to use: the given path, else the newest complete one for this config."""
    if path:
        run = open_run(path)
        if run.info.get("command") != "train-decoder":
            raise RunError(f"{path} is a {run.info.get('command')} run, not a train-decoder run")
        if run.info.get("status") != "complete":
            raise RunError(f"{path} is incomplete (status {run.info.get('status')}); resume it with `hood train-decoder --resume {path}`")
        return run
    run, skipped = find_latest(cfg.run.runs_dir, "train-decoder", cfg.name)
    if skipped:
        reporter.log(f"skipped {skipped} incomplete train-decoder run(s) in {cfg.run.runs_dir}")
    if run is None:
        raise RunError(
            f"no complete train-decoder run for '{cfg.name}' in {cfg.run.runs_dir}/; pass --run PATH or run `hood train-decoder` first"
        )
    reporter.log(f"using decoder run {run.path}")
    return run


def seeded_subset(s: ImageSet, count: int | None, seed: int) -> ImageSet:
    if count is None or count >= len(s):
        return s
    g = torch.Generator().manual_seed(seed)
    return s.subset(torch.randperm(len(s), generator=g)[:count].sort().values)


def skip_note(s: ImageSet) -> str | None:
    if not s.skipped:
        return None
    first = ", ".join(s.skipped[:3])
    return f"{s.name}: skipped {len(s.skipped)} unreadable file(s) ({first}{', ...' if len(s.skipped) > 3 else ''}); --strict makes them fatal"


def resume_state(run: Run) -> dict | None:
    """The training state of an interrupted run (None for a fresh one); a complete run is refused."""
    if run.info.get("status") == "complete":
        raise RunError(f"{run.path} is already complete; nothing to resume")
    f = run.file("train_state.pt")
    return safe_load(f) if f.is_file() else None

"""``hood pretrain``: train a classifier on the ID set, keep the best by validation accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hood.config import Config
from hood.data.sources import load_id_splits
from hood.engine import distributed
from hood.engine.pretrain import accuracy, fit_classifier
from hood.engine.progress import NullReporter, Reporter
from hood.engine.runtime import configure_threads, resolve_device, rng_state, seed_everything
from hood.errors import RunError
from hood.jobs.common import resume_state, data_root, skip_note
from hood.models.checkpoint import classifier_state, load_classifier, save_checkpoint
from hood.models.registry import build_classifier
from hood.runs import Run, create_run


def _split_validation(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = int(round(n * fraction))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def pretrain(cfg: Config, reporter: Reporter | None = None, run: Run | None = None) -> Run:
    """Run the job into ``run`` (created when None); a run holding ``train_state.pt`` is resumed."""
    reporter = reporter or NullReporter()
    device = resolve_device(cfg.run.device)
    configure_threads(cfg.run.num_threads)
    distributed.init_from_env(cfg.run.device)  # under torchrun: join the process group (else a no-op)
    run = run or create_run(cfg, "pretrain")
    state = resume_state(run)
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    splits = load_id_splits(cfg.data.id, data_root(cfg), cfg.data.image_size, cfg.data.strict)
    for s in splits.values():
        if note := skip_note(s):
            reporter.log(note)
    train, test = splits["train"], splits["test"]
    tr_idx, val_idx = _split_validation(len(train), cfg.pretrain.val_fraction, cfg.run.seed)
    classes = train.classes or []
    model = build_classifier(cfg.model.arch, len(classes))
    start_epoch = 0
    best = {"val_acc": -1.0, "epoch": 0}
    if state is not None:
        model.load_state_dict(state["model"])
        start_epoch = int(state["epoch"])
        best = state["best"]
        reporter.log(f"resuming {run.path} after epoch {start_epoch}")
    meta: dict[str, Any] = {"dataset": cfg.data.id, "config": cfg.to_dict(), "seed": cfg.run.seed}

    def on_epoch_end(epoch: int, stats: dict[str, float], opt: torch.optim.Optimizer, sched: Any) -> None:
        if stats["val_acc"] > best["val_acc"]:
            best.update(val_acc=stats["val_acc"], epoch=epoch)
            save_checkpoint(classifier_state(model, cfg.model.arch, classes, {**meta, "epoch": epoch, **stats}), run.file("classifier.pt"))
        save_checkpoint(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None,
                "epoch": epoch,
                "best": best,
                "rng": {k: v for k, v in rng_state().items() if k == "torch"},
            },
            run.file("train_state.pt"),
        )
        history = run.info.get("history", [])
        run.update(history=[*history, {"epoch": epoch, **stats}], epochs_done=epoch)

    fit_classifier(
        model, train.images[tr_idx], train.labels[tr_idx], train.images[val_idx], train.labels[val_idx],
        cfg.pretrain, cfg.run.seed, device, start_epoch, state, on_epoch_end, reporter,
    )
    if distributed.is_main_process():  # rank 0 wrote the files; the other ranks take its result below
        best_model = load_classifier(run.file("classifier.pt")).model.to(device)
        test_acc = accuracy(best_model, test.images, test.labels, device)
        run.mark_complete(test_acc=test_acc, best_val_acc=best["val_acc"], best_epoch=best["epoch"], classifier=str(Path(run.file("classifier.pt"))))
    run.info = distributed.broadcast_object(run.info)
    return run

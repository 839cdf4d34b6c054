"""``hood pretrain``: train a classifier on the ID set, keep the best by validation accuracy.

After each epoch (at most once per ``run.checkpoint_interval_s``, and on Ctrl-C/SIGTERM) the model, optimizer, scheduler,
RNG states, best-so-far and history go to ``train_state.pt``; ``--resume RUN`` continues from there and,
because each epoch's shuffle and augmentation come from a generator seeded by ``(seed, epoch)``, ends with
the same weights as an uninterrupted run.
"""

from __future__ import annotations

from typing import Any

import torch

from hood.config import Config
from hood.data.sources import load_id_splits
from hood.engine import distributed
from hood.engine.pretrain import accuracy, fit_classifier
from hood.engine.runtime import configure_threads, resolve_device, seed_everything
from hood.errors import DataError, TrainingDivergedError
from hood.jobs.lookup import data_root, skip_note
from hood.jobs.resume import Checkpointer, all_finite, capture_rng, restore_rng, resume_state
from hood.locks import holds_locks
from hood.models.checkpoint import classifier_state, load_classifier, save_checkpoint
from hood.models.registry import build_classifier
from hood.progress import NullReporter, Reporter
from hood.runs import Run, create_run, lock_run

COMMAND = "pretrain"


def _split_validation(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = int(round(n * fraction))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def _with_lr(opt_state: dict[str, Any], lr: float) -> dict[str, Any]:
    """An optimizer state whose learning rate is ``lr`` (a deliberate change on resume)."""
    groups = [{**g, "lr": lr} for g in opt_state["param_groups"]]
    return {**opt_state, "param_groups": groups}


@holds_locks  # the run it writes is locked until it returns
def pretrain(cfg: Config, reporter: Reporter | None = None, run: Run | None = None) -> Run:
    """Run the job into ``run`` (created when None); a run holding ``train_state.pt`` is resumed."""
    reporter = reporter or NullReporter()
    device = resolve_device(cfg.run.device)
    configure_threads(cfg.run.num_threads)
    distributed.init_from_env(cfg.run.device)  # under torchrun: join the process group (else a no-op)
    reporter = distributed.main_only(reporter)  # under torchrun: progress and log lines once, from rank 0
    run = run or create_run(cfg, COMMAND)
    lock_run(run.path, COMMAND)  # a run given by the caller is locked too (this process may hold it already)
    state = resume_state(run, cfg, COMMAND, reporter)
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    splits = load_id_splits(cfg.data.id, data_root(cfg), cfg.data.image_size, cfg.data.strict)
    notes = [n for s in splits.values() if (n := skip_note(s))]
    for note in notes:
        reporter.log(note)
    train, test = splits["train"], splits["test"]
    tr_idx, val_idx = _split_validation(len(train), cfg.pretrain.val_fraction, cfg.run.seed)
    if len(tr_idx) < 1:
        raise DataError(f"ID data set '{cfg.data.id}' has too few training images ({len(train)}) to train on")
    classes = train.classes or []
    model = build_classifier(cfg.model.arch, len(classes))
    start_epoch = 0
    best: dict[str, Any] = {"val_acc": -1.0, "epoch": 0}
    history: list[dict[str, Any]] = []
    if state is not None:
        model.load_state_dict(state["model"])
        start_epoch = int(state["epoch"])
        best = dict(state["best"])
        history = list(state.get("history", []))
        restore_rng(state.get("rng"))
        if (state.get("config") or {}).get("pretrain", {}).get("lr", cfg.pretrain.lr) != cfg.pretrain.lr:
            state = {**state, "optimizer": _with_lr(state["optimizer"], cfg.pretrain.lr)}  # logged by resume_state
        reporter.log(f"resuming {run.path} after epoch {start_epoch}")
    run.update(status="running", epochs_done=start_epoch, history=history, skipped_images=notes)
    # held_out_rows: the training images this classifier never trains on, so that a decoder's validation split
    # can use unseen ID images (data.val_id_source: classifier); n_train ties those rows to this training split
    meta: dict[str, Any] = {"dataset": cfg.data.id, "config": cfg.to_dict(), "seed": cfg.run.seed,
                            "n_train": len(train), "held_out_rows": val_idx.tolist()}
    ckpt = Checkpointer(run, COMMAND, cfg.pretrain.epochs, cfg.run.checkpoint_interval_s)
    ckpt.saved_epoch = start_epoch or None
    last_lr = {"lr": cfg.pretrain.lr}
    epoch_seconds: list[float] = list(run.info.get("epoch_seconds", []))[:start_epoch]

    def on_epoch_end(epoch: int, stats: dict[str, float], opt: torch.optim.Optimizer, sched: Any) -> None:
        last_lr["lr"] = float(opt.param_groups[0]["lr"])
        if not all_finite(model):  # the epoch's last step broke the weights: never checkpoint them
            raise TrainingDivergedError("non-finite weights")
        if stats["val_acc"] > best["val_acc"]:
            best.update(val_acc=stats["val_acc"], epoch=epoch)
            # before train_state: a crash in between re-runs this epoch, which rewrites the same file
            if distributed.is_main_process():
                save_checkpoint(classifier_state(model, cfg.model.arch, classes, {**meta, "epoch": epoch, **stats}), run.file("classifier.pt"))
        epoch_seconds.append(round(stats["seconds"], 3))  # wall time, kept apart: history is reproducible
        history.append({"epoch": epoch, **{k: v for k, v in stats.items() if k != "seconds"}})
        ckpt.epoch_end(
            epoch,
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None,
                "best": dict(best),
                "history": list(history),
                "rng": capture_rng(),
                "config": cfg.to_dict(),
            },
            history=list(history),
            epoch_seconds=list(epoch_seconds),
        )

    failed = lambda: history[-1]["epoch"] + 1 if history else start_epoch + 1  # noqa: E731
    with ckpt.guard(reporter, "classifier", "pretrain.lr", failed, lambda: last_lr["lr"]):
        fit_classifier(
            model, train.images[tr_idx], train.labels[tr_idx], train.images[val_idx], train.labels[val_idx],
            cfg.pretrain, cfg.run.seed, device, start_epoch, state, on_epoch_end, reporter,
            compile=cfg.run.compile,
        )
    if distributed.is_main_process():  # rank 0 wrote the files; the other ranks take its result below
        best_model = load_classifier(run.file("classifier.pt")).model.to(device)
        test_acc = accuracy(best_model, test.images, test.labels, device)
        run.mark_complete(test_acc=test_acc, best_val_acc=best["val_acc"], best_epoch=best["epoch"], classifier=str(run.file("classifier.pt").resolve()))
    run.info = distributed.broadcast_object(run.info)
    return run

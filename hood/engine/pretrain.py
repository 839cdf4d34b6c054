"""Classifier pre-training: the paper's recipe (docs/method.md) with the data kept as uint8 tensors on the device.

Crop and flip run on whole batches on the device (no DataLoader workers, no per-image Python), bf16
autocast and channels-last on CUDA. Each epoch's shuffle and augmentation come from a generator seeded
by ``(seed, epoch)``, so a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from hood.config import PretrainConfig
from hood.data.transforms import crop_flip, crop_flip_params, normalize
from hood.engine import distributed
from hood.engine.cuda_graph import GraphedStep, graphs_apply
from hood.engine.runtime import autocast, classifier_train_format, fused_optimizer, load_optimizer_state, synchronize
from hood.errors import TrainingDivergedError
from hood.models.base import Classifier
from hood.progress import NullReporter, Reporter

_REPORT_EVERY = 25  # steps between progress updates that read the loss value


@torch.inference_mode()
def accuracy(
    model: Classifier, images: torch.Tensor, labels: torch.Tensor, device: torch.device, batch_size: int = 500,
    sharded: bool = False,
) -> float:
    """Top-1 accuracy. ``sharded``: each rank scores every ``world_size``-th image and the counts are
    summed, so all ranks get the same number (the plateau schedule must not diverge between them)."""
    model.eval()
    fmt = classifier_train_format(device)  # the layout the model trains in; nothing is converted here
    if sharded:
        images, labels = distributed.shard(images), distributed.shard(labels)
    counts = torch.zeros(2, dtype=torch.float64, device=device)  # correct, seen
    for s in range(0, len(images), batch_size):
        x = normalize(images[s : s + batch_size].to(device)).contiguous(memory_format=fmt)
        with autocast(device):
            pred = model(x).argmax(1)
        counts[0] += (pred == labels[s : s + batch_size].to(device)).sum()
        counts[1] += len(x)
    if sharded:
        distributed.all_reduce_sum(counts)
    correct, seen = counts.tolist()
    return correct / max(seen, 1)


def make_optimizer(model: Classifier, cfg: PretrainConfig) -> torch.optim.SGD:
    params = list(model.parameters())
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=False,
        fused=fused_optimizer(params) or None,
    )


def make_scheduler(opt: torch.optim.Optimizer, cfg: PretrainConfig, steps_per_epoch: int) -> Any:
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience)
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    return None


def fit_classifier(
    model: Classifier,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    val_images: torch.Tensor,
    val_labels: torch.Tensor,
    cfg: PretrainConfig,
    seed: int,
    device: torch.device,
    start_epoch: int = 0,
    state: dict[str, Any] | None = None,
    on_epoch_end: Callable[[int, dict[str, float], torch.optim.Optimizer, Any], None] | None = None,
    reporter: Reporter | None = None,
    compile: bool = False,
) -> None:
    """Train in place. ``on_epoch_end(epoch, stats, optimizer, scheduler)`` checkpoints and keeps the best;
    ``stats["seconds"]`` is the wall time of the epoch's training steps (device work included).

    Under torchrun the model runs inside DDP; every rank draws the same permutation and augmentation
    for each global batch and trains on its :func:`~hood.engine.distributed.shard` of it, so
    ``cfg.batch_size`` stays the global batch. ``on_epoch_end`` (which writes files) runs on rank 0 only.
    ``compile`` wraps the training forward in ``torch.compile`` (worth it for long GPU runs).
    On one CUDA process without ``compile`` each step's forward and backward replay as one CUDA graph
    (:func:`~hood.engine.cuda_graph.graphs_apply`): on a fast GPU eager steps are bound by the host's kernel
    launches (docs/speed.md).
    """
    reporter = distributed.main_only(reporter or NullReporter())
    model.to(device)
    fmt = classifier_train_format(device)
    model.to(memory_format=fmt)
    net = distributed.wrap(model, device)
    if compile:
        net = torch.compile(net)
    world = distributed.world_size()
    steps = math.ceil(len(train_images) / cfg.batch_size)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, steps)
    if state is not None:
        load_optimizer_state(opt, state["optimizer"])
        if sched is not None and state.get("scheduler") is not None:
            sched.load_state_dict(state["scheduler"])
    # the whole (small) training set lives on the device as uint8: no loader, no host->device copies per step
    x_all = train_images.to(device)
    y_all = train_labels.to(device)
    n_all = len(x_all)
    # each epoch's order and crops/flips, copied into the same device buffers once per epoch (a copy per
    # step would make the host wait for the GPU every step; fixed buffers let a CUDA graph read them)
    perm_buf = torch.empty(n_all, dtype=torch.long, device=device)
    aug_buf = torch.empty(n_all, 3, dtype=torch.long, device=device) if cfg.augment else None
    positions = torch.arange(n_all, device=device)
    graphed = graphs_apply(device, world, compile)

    def forward_backward(pos: torch.Tensor) -> torch.Tensor:
        """Gradients of the batch at epoch positions ``pos``; returns ``[loss * n, correct]`` of this rank's
        shard. Device work only, so it can be captured as a CUDA graph; the optimizer step stays outside
        (eager, so the plateau schedule's learning-rate changes apply). With a graph the gradients are
        zeroed in place rather than dropped: the eager optimizer must read the tensors the graph writes."""
        idx = perm_buf[pos]
        x = normalize(x_all[idx])
        if aug_buf is not None:
            x = crop_flip(x, aug_buf[pos])
        x, y = distributed.shard(x), distributed.shard(y_all[idx])
        x = x.contiguous(memory_format=fmt)
        with autocast(device):
            logits = net(x)
            loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=not graphed)
        loss.backward()
        with torch.no_grad():
            return torch.stack([loss.detach() * len(y), (logits.argmax(1) == y).sum().float()])

    step_fn = GraphedStep(forward_backward, device) if graphed else forward_backward
    task = reporter.task("pretrain", (cfg.epochs - start_epoch) * len(train_images))
    for epoch in range(start_epoch, cfg.epochs):
        synchronize(device)
        t0 = time.perf_counter()
        model.train()
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        perm_buf.copy_(torch.randperm(n_all, generator=g))
        if aug_buf is not None:  # drawn for the whole global batch order: every rank consumes g identically
            aug_buf.copy_(crop_flip_params(n_all, generator=g))
        # running sums stay on the device: reading the loss every step would stall the GPU queue
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss * n, correct, seen
        for step, s in enumerate(range(0, n_all, cfg.batch_size)):
            pos = positions[s : s + cfg.batch_size]
            if len(pos) < world:  # a rank would get no sample; the remainder joins the next epoch's shuffle
                continue
            out = step_fn(pos)
            opt.step()
            if cfg.scheduler == "onecycle":
                sched.step()
            n_local = len(distributed.shard(pos))  # this rank's samples of the batch
            sums[:2] += out
            sums[2] += n_local
            if step % _REPORT_EVERY == 0:  # reading the loss syncs with the device: only now and then
                reporter.advance(task, len(pos), epoch=epoch + 1, loss=float(out[0]) / n_local)
            else:
                reporter.advance(task, len(pos))
        total, correct, seen = distributed.all_reduce_sum(sums).tolist()  # .tolist() waits for the epoch's steps
        seconds = time.perf_counter() - t0  # training steps only: validation and checkpoints not counted
        if not math.isfinite(total):
            raise TrainingDivergedError(
                f"classifier loss became NaN/inf in epoch {epoch + 1}; the checkpoint of epoch {epoch} is kept. "
                f"Lower the learning rate (--set pretrain.lr=...)"
            )
        distributed.broadcast_buffers(model)  # every rank validates rank 0's model (the one saved)
        val_acc = accuracy(model, val_images, val_labels, device, sharded=True) if len(val_images) else correct / seen
        if cfg.scheduler == "plateau":
            sched.step(val_acc)
        stats = {
            "loss": total / seen, "train_acc": correct / seen, "val_acc": val_acc, "lr": opt.param_groups[0]["lr"],
            "seconds": seconds,
        }
        reporter.log(
            f"epoch {epoch + 1}/{cfg.epochs}  loss {stats['loss']:.4f}  train {stats['train_acc']:.3f}  val {val_acc:.3f}"
            f"  ({seconds:.2f} s)"
        )
        if on_epoch_end is not None and distributed.is_main_process():
            on_epoch_end(epoch + 1, stats, opt, sched)
    reporter.done(task)

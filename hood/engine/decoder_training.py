"""Training the heatmap decoder on a frozen classifier (the paper's recipe, see docs/method.md).

1. Features of the ID training images and of the sampled outliers are computed once (frozen classifier,
   no augmentation), not per batch and epoch.
2. ``min``/``max`` for feature normalization are the true extremes over the ID training features, stored
   in the decoder as buffers.
3. Each outlier is paired with its *own* nearest same-predicted-class ID prototype (batched search).
4. Per sample ``x_hat = h + x`` is regressed onto the target ``t`` (``x`` for ID, the prototype for an
   outlier) with weights ``1 + 5|t|``; summed over pixels and channels, averaged over the batch.

A checkpoint with optimizer and epoch is written atomically every ``checkpoint_every`` epochs, so an
interrupted run resumes from its last completed epoch. Each epoch's shuffle comes from a generator
seeded by ``(seed, epoch)``, which makes a resumed run identical to an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from hood.config import DecoderConfig
from hood.data.transforms import normalize
from hood.engine import distributed
from hood.engine.cuda_graph import GraphedStep, graphs_apply
from hood.engine.features import FeatureSet
from hood.engine.prototypes import nearest_prototypes
from hood.engine.runtime import MEMORY_FORMAT, fused_optimizer, load_optimizer_state, synchronize, training_autocast
from hood.errors import ConfigError, TrainingDivergedError
from hood.models.decoder import HeatmapDecoder
from hood.progress import NullReporter, Reporter


def sample_ood_indices(pool_size: int, num_ood: int, seed: int) -> torch.Tensor:
    """``num_ood`` distinct pool indices, reproducible from the seed and saved with the run."""
    if num_ood > pool_size:
        raise ConfigError(
            f"config key 'decoder.num_ood' is {num_ood}, but the auxiliary pool has only {pool_size} images; "
            f"lower --num-ood"
        )
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(pool_size, generator=g)[:num_ood].sort().values


@dataclass
class DecoderData:
    """Everything one decoder epoch reads, computed once: inputs, their features, and target indices.

    The first ``n_id`` rows are ID images, the rest outliers. ``target_idx[i]`` is the row of the target
    image: ``i`` itself for ID (``h = 0``), the row's own prototype (an ID row) for outliers, or with
    ``decoder.prototype_k`` > 1 its mean prototype image, stored in ``images`` after the outlier rows.
    """

    images: torch.Tensor  # (n_id + n_ood) x 3 x H x W uint8 (+ mean prototypes)
    feats: FeatureSet
    target_idx: torch.Tensor
    n_id: int

    @property
    def n_ood(self) -> int:
        return len(self.target_idx) - self.n_id

    def epoch_rows(self, generator: torch.Generator) -> torch.Tensor:
        """The rows one epoch trains on: every ID image and every outlier, shuffled."""
        return torch.randperm(len(self.target_idx), generator=generator)

    def to(self, device: torch.device) -> DecoderData:
        return DecoderData(self.images.to(device), self.feats.to(device), self.target_idx.to(device), self.n_id)


def mean_images(images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Per row of ``rows`` (``n x k`` indices into ``images``), the pixel mean of those ``k`` images,
    rounded back to uint8 (half a grey level at most: far below anything the loss resolves)."""
    out = torch.empty((len(rows), *images.shape[1:]), dtype=torch.uint8)
    for s in range(0, len(rows), 1024):  # bounds the float copy to 1024 x k images
        out[s : s + 1024] = images[rows[s : s + 1024]].float().mean(1).round_().to(torch.uint8)
    return out


def build_decoder_data(
    id_images: torch.Tensor,
    ood_images: torch.Tensor,
    feats: FeatureSet,
    device: torch.device,
    prototype_k: int = 1,
) -> tuple[DecoderData, torch.Tensor]:
    """Pair each outlier with its prototype; returns the data and the prototype index per outlier
    (``n x k`` with ``prototype_k`` k > 1).

    ``feats`` holds the rows of ``id_images`` then those of ``ood_images``, as the data keeps them: one
    FeatureSet, so the stage maps are never held as two parts and a joined copy.

    With ``k > 1`` an outlier's target is the mean image of its ``k`` nearest same-class ID images: those
    means are stored as extra rows after the outliers and ``target_idx`` points at them, so a training
    step gathers its targets the same way for every ``k`` (and a CUDA graph of it stays the same).
    """
    if len(feats) != len(id_images) + len(ood_images):
        raise ValueError(f"{len(feats)} feature rows for {len(id_images)} ID and {len(ood_images)} outlier images")
    n_id = len(id_images)
    preds = feats.preds
    proto = nearest_prototypes(feats.features[n_id:], preds[n_id:], feats.features[:n_id], preds[:n_id], device, k=prototype_k)
    images = [id_images, ood_images]
    id_targets = torch.arange(n_id)
    if prototype_k == 1:
        target_idx = torch.cat([id_targets, proto])
    else:
        images.append(mean_images(id_images, proto))
        target_idx = torch.cat([id_targets, n_id + len(ood_images) + torch.arange(len(ood_images))])
    return DecoderData(torch.cat(images), feats, target_idx, n_id), proto


_REPORT_EVERY = 10  # steps between progress updates that read the loss value


def heatmap_loss(h: torch.Tensor, x: torch.Tensor, t: torch.Tensor, weight: float = 5.0) -> torch.Tensor:
    """``mean_batch sum_pixels (1 + weight|t|) (h + x - t)^2`` in the normalized input space."""
    w = 1.0 + weight * t.abs()
    return (w * (h + x - t).square()).flatten(1).sum(1).mean()


def decoder_step(
    decoder: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: DecoderData,
    idx: torch.Tensor,
    loss_weight: float,
    device: torch.device,
) -> torch.Tensor:
    """One optimizer step on the rows ``idx`` (on the device); returns the loss, not read back.

    Only gathers from tensors already on the device, no host synchronisation: the same code runs eagerly
    or captured as a CUDA graph (:mod:`hood.engine.cuda_graph`).
    """
    x = normalize(data.images[idx])
    t = normalize(data.images[data.target_idx[idx]])
    maps = None if data.feats.maps is None else [m[idx] for m in data.feats.maps]
    with training_autocast(device):
        h = decoder(data.feats.features[idx], data.feats.logits[idx].argmax(1), maps)
    loss = heatmap_loss(h.float(), x, t, loss_weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def run_epoch(
    decoder: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: DecoderData,
    batch_size: int,
    loss_weight: float,
    generator: torch.Generator,
    device: torch.device,
    on_batch: Callable[[int, float | None], None] | None = None,
    step: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """One pass over ``data`` (already on ``device``); returns the mean per-sample loss.

    ``decoder`` may be the DDP wrapper: each rank then trains on its shard of every global batch (the
    permutation is the same on all ranks) and the returned loss is the mean over all ranks.
    ``on_batch(n, loss)`` gets the loss only every few steps (None otherwise): reading it syncs the GPU.
    ``step(idx)``, when given, replaces :func:`decoder_step` (a :class:`~hood.engine.cuda_graph.GraphedStep`
    wrapping it).
    """
    decoder.train()
    if step is None:
        step = lambda rows: decoder_step(decoder, optimizer, data, rows, loss_weight, device)  # noqa: E731
    world = distributed.world_size()
    perm = data.epoch_rows(generator).to(device)
    n = len(perm)
    # loss * n and n, summed on the device; one host read per epoch instead of one per step
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    for i, start in enumerate(range(0, n, batch_size)):
        batch = perm[start : start + batch_size]
        if len(batch) < 2 * world:  # BatchNorm needs two samples per rank; the rest joins the next shuffle
            continue
        idx = distributed.shard(batch)
        loss = step(idx)
        sums[0] += loss * len(idx)
        sums[1] += len(idx)
        if on_batch is not None:
            on_batch(len(batch), float(loss) if i % _REPORT_EVERY == 0 else None)
    total, count = distributed.all_reduce_sum(sums).tolist()
    if not math.isfinite(total):
        raise TrainingDivergedError("non-finite loss")
    return total / max(count, 1)


def prepare_decoder(decoder: HeatmapDecoder, device: torch.device) -> HeatmapDecoder:
    """On ``device``, NHWC: the transposed convolutions run ~20% faster so (see runtime.MEMORY_FORMAT)."""
    return decoder.to(device=device, memory_format=MEMORY_FORMAT)


def make_optimizer(decoder: HeatmapDecoder, cfg: DecoderConfig, capturable: bool = False) -> torch.optim.Adam:
    """The paper's Adam; fused on CUDA, and ``capturable`` (its step count on the device) for CUDA graphs."""
    params = list(decoder.parameters())
    return torch.optim.Adam(
        params, lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]), fused=fused_optimizer(params) or None, capturable=capturable,
    )


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def fit_decoder(
    decoder: HeatmapDecoder,
    data: DecoderData,
    cfg: DecoderConfig,
    seed: int,
    device: torch.device,
    start_epoch: int = 0,
    optimizer_state: dict[str, Any] | None = None,
    on_epoch_end: Callable[[int, dict[str, float], HeatmapDecoder, torch.optim.Optimizer], None] | None = None,
    reporter: Reporter | None = None,
    compile: bool = False,
) -> list[float]:
    """Train from ``start_epoch`` to ``cfg.epochs``; ``on_epoch_end(epoch, stats, decoder, optimizer)``
    checkpoints, with ``stats`` = the epoch's mean ``loss`` and the wall ``seconds`` of its steps (device
    work included, checkpoint writes not). Returns epoch losses.

    Under torchrun the decoder runs inside DDP and ``on_epoch_end`` (which writes files) runs on rank 0
    only; ``decoder`` itself stays unwrapped, so its ``state_dict`` has no ``module.`` prefix.
    """
    reporter = distributed.main_only(reporter or NullReporter())
    prepare_decoder(decoder, device)
    net = distributed.wrap(decoder, device)
    if compile:
        net = torch.compile(net)
    graphed = graphs_apply(cfg.cuda_graph, device, distributed.world_size(), compile, "decoder.cuda_graph", reporter.log)
    optimizer = make_optimizer(decoder, cfg, capturable=graphed)
    if optimizer_state is not None:
        load_optimizer_state(optimizer, optimizer_state)
    data = data.to(device)
    step = None
    if graphed:
        step = GraphedStep(
            lambda rows: decoder_step(net, optimizer, data, rows, cfg.loss_weight, device), device,
        )
    losses: list[float] = []
    task = reporter.task("decoder", (cfg.epochs - start_epoch) * len(data.target_idx))
    for epoch in range(start_epoch, cfg.epochs):
        synchronize(device)
        t0 = time.perf_counter()
        try:
            loss = run_epoch(
                net, optimizer, data, cfg.batch_size, cfg.loss_weight, epoch_generator(seed, epoch), device,
                on_batch=lambda n, v, e=epoch: reporter.advance(task, n, **({} if v is None else {"epoch": e + 1, "loss": v})),
                step=step,
            )
        except TrainingDivergedError:
            raise TrainingDivergedError(
                f"decoder loss became NaN/inf in epoch {epoch + 1}; the checkpoint of epoch {epoch} is kept. "
                f"Lower the learning rate (--set decoder.lr=...) and resume or restart"
            ) from None
        seconds = time.perf_counter() - t0  # run_epoch read its loss sums back: the device is done
        losses.append(loss)
        reporter.log(f"epoch {epoch + 1}/{cfg.epochs}  loss {loss:.4f}  ({seconds:.2f} s)")
        if on_epoch_end is not None and distributed.is_main_process():
            on_epoch_end(epoch + 1, {"loss": loss, "seconds": seconds}, decoder, optimizer)
    reporter.done(task)
    return losses

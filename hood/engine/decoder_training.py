"""Training the heatmap decoder on a frozen classifier (the paper's recipe, see docs/method.md).

:func:`train_heatmap_decoder` is the one recipe, called by ``hood train-decoder`` and by
``hood.HeatmapDetector.fit`` alike:

1. Features of the ID training images and of the sampled outliers are computed once (frozen classifier,
   no augmentation), not per batch and epoch.
2. ``min``/``max`` for feature normalization are the true extremes over the ID training features, stored
   in the decoder as buffers.
3. Each outlier is paired with its *own* nearest same-predicted-class ID prototype (batched search).
4. Per sample ``x_hat = h + x`` is regressed onto the target ``t`` (``x`` for ID, the prototype for an
   outlier) with weights ``1 + 5|t|``; summed over pixels and channels, averaged over the batch.
5. Afterwards: the stuck-pixel check on seeded ID rows, and the noise floor, when asked for, on the ID images
   the caller gives (images the decoder did not train on, where there are any).

The decoder's initialization is drawn from its own generator seeded by ``seed`` (the caller's random state
is left alone), and each epoch's shuffle from one seeded by ``(seed, epoch)``: the same images, settings and
seed give the same decoder, and a resumed run equals an uninterrupted one.

"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch

from hood.config import DecoderConfig, validate_decoder
from hood.data.composites import Composites, make_composites
from hood.data.transforms import normalize
from hood.engine import distributed
from hood.engine.cuda_graph import GraphedStep, graphs_apply
from hood.engine.features import FeatureSet, extract_features
from hood.engine.heatmaps import STUCK_CHECK_IMAGES, stuck_pixels
from hood.engine.noise_floor import FLOOR_IMAGES, erasing_floor, measure_noise_floor
from hood.engine.prototypes import nearest_prototypes
from hood.engine.runtime import (
    MEMORY_FORMAT,
    PhaseTimer,
    fused_optimizer,
    load_optimizer_state,
    seeded_indices,
    synchronize,
    training_autocast,
)
from hood.errors import ConfigError, TrainingDivergedError
from hood.models.base import Classifier
from hood.models.decoder import DecoderSpec, HeatmapDecoder
from hood.progress import NullReporter, Reporter


def decoder_settings(**settings: Any) -> DecoderConfig:
    """The recipe with ``settings`` (``decoder.*`` keys by name) in place of its defaults, checked as a config
    file's would be: an unknown name or a value out of range is one ValueError naming it."""
    known = {f.name for f in fields(DecoderConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"unknown decoder setting '{unknown[0]}'; the settings are {', '.join(sorted(known))}")
    recipe = DecoderConfig(**settings)
    try:
        validate_decoder(recipe)
    except ConfigError as err:
        raise ValueError(str(err).replace("config key 'decoder.", "'")) from None
    return recipe


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

    images: torch.Tensor  # (n_id + n_ood) x 3 x H x W uint8 (+ composites, + mean prototypes)
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
    composites: Composites | None = None,
) -> tuple[DecoderData, torch.Tensor]:
    """Pair each outlier with its prototype; returns the data and the prototype index per outlier
    (``n x k`` with ``prototype_k`` k > 1).

    ``feats`` holds the rows of ``id_images`` then those of ``ood_images`` (then those of the ``composites``),
    as the data keeps them: one FeatureSet, so the stage maps are never held as two parts and a joined copy. A
    composite's target is the ID image it was made of: the change to draw is the pasted region's, nothing
    outside it.

    With ``k > 1`` an outlier's target is the mean image of its ``k`` nearest same-class ID images: those
    means are stored as extra rows after the outliers and ``target_idx`` points at them, so a training
    step gathers its targets the same way for every ``k`` (and a CUDA graph of it stays the same).
    """
    n_id, n_ood, n_comp = len(id_images), len(ood_images), 0 if composites is None else len(composites)
    if len(feats) != n_id + n_ood + n_comp:
        raise ValueError(f"{len(feats)} feature rows for {n_id} ID, {n_ood} outlier and {n_comp} composite images")
    preds = feats.preds
    end = n_id + n_ood
    proto = nearest_prototypes(feats.features[n_id:end], preds[n_id:end], feats.features[:n_id], preds[:n_id], device, k=prototype_k)
    images = [id_images, ood_images]
    targets = [torch.arange(n_id)]
    if prototype_k == 1:
        targets.append(proto)
    else:
        targets.append(end + n_comp + torch.arange(n_ood))  # the mean images, stored after the composites
    if composites is not None:
        images.append(composites.images)
        targets.append(composites.id_rows)
    if prototype_k > 1:
        images.append(mean_images(id_images, proto))
    return DecoderData(torch.cat(images), feats, torch.cat(targets), n_id), proto


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
    graphed = graphs_apply(device, distributed.world_size(), compile)
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


@dataclass
class Resume:
    """Where an interrupted training stopped: the decoder and optimizer after ``epoch`` and its losses."""

    decoder: dict[str, Any]
    optimizer: dict[str, Any]
    epoch: int
    losses: list[float]


@dataclass
class TrainedDecoder:
    """What :func:`train_heatmap_decoder` made: the decoder (eval mode, CPU layout) and the record of its training."""

    decoder: HeatmapDecoder
    losses: list[float]  # per epoch, a resumed run's earlier epochs included
    prototypes: torch.Tensor  # per outlier, the ID row(s) of its target
    stuck: dict[str, int]  # heatmap pixels lit on every ID image checked (engine/heatmaps.py)
    noise_floor: dict[str, Any] | None  # what the floor was measured on, when one was asked for
    id_features: FeatureSet  # features and logits (no stage maps) of the ID images: the fits of evaluate read them


def train_heatmap_decoder(
    model: Classifier,
    spec: DecoderSpec,
    id_images: torch.Tensor,
    ood_images: torch.Tensor,
    settings: DecoderConfig,
    seed: int,
    device: torch.device,
    *,
    floor_images: torch.Tensor | None = None,
    floor_source: str = "the ID images given",
    resume: Resume | None = None,
    before_training: Callable[[torch.Tensor], None] | None = None,
    on_epoch_end: Callable[[int, dict[str, float], HeatmapDecoder, torch.optim.Optimizer], None] | None = None,
    reporter: Reporter | None = None,
    batch_size: int = 500,
    compile: bool = False,
    phases: PhaseTimer | None = None,
) -> TrainedDecoder:
    """Train a heatmap decoder for ``model`` on uint8 ``id_images`` and ``ood_images`` (the paper's recipe).

    ``floor_images``: ID images to measure the noise floor on when ``settings.noise_floor_quantile`` > 0 (at
    most :data:`FLOOR_IMAGES` of them, a seeded draw). ``before_training(prototypes)`` runs once the outliers
    are paired, before the first epoch; ``on_epoch_end`` checkpoints (see :func:`fit_decoder`). ``batch_size``
    is that of the feature passes.
    """
    reporter = reporter or NullReporter()
    phases = phases or PhaseTimer(device)
    n_id = len(id_images)
    # one pass over both, in the order the decoder's data keeps them: the stage maps (with fw_layers > 1 most
    # of the memory) are written once into place, never held twice as ID and outlier parts and their join
    comp = make_composites(id_images, ood_images, settings.composites, seed) if settings.composites else None
    inputs = [id_images, ood_images] + ([] if comp is None else [comp.images])
    feats = extract_features(model, torch.cat(inputs), device, batch_size, spec.fw_layers - 1,
                             reporter=reporter, description="ID and outlier features")
    phases.mark("features")
    data, proto = build_decoder_data(id_images, ood_images, feats, device, settings.prototype_k, comp)
    phases.mark("prototypes")
    with torch.random.fork_rng(devices=[]):  # a seeded initialization that leaves the caller's RNG alone
        torch.manual_seed(seed)
        decoder = HeatmapDecoder(spec)
    ids = feats.features[:n_id]  # the true extremes over the ID training features
    decoder.set_feature_range(float(ids.min()), float(ids.max()))
    losses: list[float] = []
    start, optimizer_state = 0, None
    if resume is not None:
        decoder.load_state_dict(resume.decoder)
        start, optimizer_state, losses = resume.epoch, resume.optimizer, list(resume.losses)
        if optimizer_state["param_groups"][0].get("lr") != settings.lr:  # a resume may lower the rate
            optimizer_state = {**optimizer_state, "param_groups": [{**g, "lr": settings.lr} for g in optimizer_state["param_groups"]]}
    if before_training is not None:
        before_training(proto)
    losses += fit_decoder(decoder, data, settings, seed, device, start, optimizer_state, on_epoch_end, reporter, compile)
    phases.mark("train")
    rows = seeded_indices(n_id, STUCK_CHECK_IMAGES, seed)
    stuck = {"pixels": stuck_pixels(decoder, data.feats.take(rows), device, batch_size),
             "of": spec.out_size**2, "images": len(rows)}
    floor = None
    if settings.noise_floor_quantile > 0:
        if floor_images is None or len(floor_images) == 0:
            raise ValueError("the noise floor needs ID images to be measured on")
        chosen = floor_images[seeded_indices(len(floor_images), FLOOR_IMAGES, seed)]
        floor_feats = extract_features(model, chosen, device, batch_size, spec.fw_layers - 1, description="noise floor features")
        q = settings.noise_floor_quantile
        value = measure_noise_floor(decoder, floor_feats, q, device, batch_size)
        floor = {"quantile": q, "value": value, "images": len(chosen), "source": floor_source}
        if (refused := erasing_floor(value, q)) is not None:  # kept at 0, the measurement recorded beside it
            floor.update(value=0.0, measured=value, refused=refused)
        decoder.noise_floor.fill_(floor["value"])
        reporter.log(refused or f"noise floor {value:.3f}: the {q:.4g} quantile of heatmap pixels on {len(chosen)} {floor_source}")
        phases.mark("noise_floor")
    # back in the layout a saved decoder loads in (training ran channels-last): the scores of a decoder just
    # trained, of the same one saved and loaded, and of the command line on it are then the same bits
    decoder = decoder.cpu().eval().to(memory_format=torch.contiguous_format)
    id_feats = FeatureSet(feats.features[:n_id].clone(), feats.logits[:n_id].clone())
    return TrainedDecoder(decoder, losses, proto, stuck, floor, id_feats)

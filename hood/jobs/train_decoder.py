"""``hood train-decoder``: features once, prototypes, then the decoder epochs, checkpointed each epoch.

The sampled outliers are written to ``ood_samples.json`` before the first epoch; ``--resume RUN`` reads
them back instead of sampling again, checks the classifier is the same one (by fingerprint), restores the
decoder, optimizer and RNG states, and continues so that the result equals an uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from hood.config import Config
from hood.data.sources import load_id_splits, load_image_set
from hood.data.validation import validation_rows
from hood.engine import distributed
from hood.engine.decoder_training import DecoderData, build_decoder_data, fit_decoder, sample_ood_indices
from hood.engine.features import extract_features
from hood.engine.heatmaps import STUCK_CHECK_IMAGES, stuck_pixels
from hood.engine.noise_floor import measure_noise_floor
from hood.engine.runtime import PhaseTimer, configure_threads, resolve_device, seed_everything, seeded_indices
from hood.errors import ConfigError, DataError, RunError, TrainingDivergedError
from hood.fileio import atomic_write_json
from hood.jobs.lookup import check_classifier, data_root, open_classifier, skip_note
from hood.jobs.resume import Checkpointer, all_finite, capture_rng, restore_rng, resume_state
from hood.locks import holds_locks
from hood.models.adapter import decoder_spec_of, is_external_arch
from hood.models.checkpoint import save_decoder
from hood.models.decoder import HeatmapDecoder, decoder_layout, decoder_spec_for
from hood.progress import NullReporter, Reporter
from hood.runs import Run, create_run, lock_run

COMMAND = "train-decoder"
OOD_FILE = "ood_samples.json"


def _saved_indices(run: Run, pool_n: int, num_ood: int) -> torch.Tensor:
    """The outlier indices an interrupted run sampled; refuses when the pool is no longer the same size."""
    f = run.file(OOD_FILE)
    try:
        saved = json.loads(f.read_text())
        indices = [int(i) for i in saved["indices"]]
        size = int(saved["pool_size"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RunError(f"{f} is missing or damaged ({type(err).__name__}); the run cannot be resumed, start a new one") from None
    if size != pool_n:
        raise RunError(
            f"cannot resume {run.path}: the auxiliary set had {size} readable images when the run started, now {pool_n}"
        )
    if len(indices) != num_ood or (indices and not 0 <= min(indices) <= max(indices) < pool_n):
        raise RunError(f"{f} does not hold {num_ood} valid indices into the pool; the run cannot be resumed")
    return torch.tensor(indices, dtype=torch.long)


def check_image_size(cfg: Config) -> None:
    """The decoder draws heatmaps of one fixed size per architecture; other input sizes cannot be trained."""
    if is_external_arch(cfg.model.arch):  # any classifier: a decoder is built for the input size, if it can be
        try:
            decoder_layout(cfg.data.image_size)
        except ValueError as err:
            raise ConfigError(f"config key 'data.image_size': {err}") from None
        return
    out_size = decoder_spec_for(cfg.model.arch, 1, 1).out_size
    if cfg.data.image_size != out_size:
        raise ConfigError(
            f"config key 'data.image_size' is {cfg.data.image_size}, but the {cfg.model.arch} decoder draws "
            f"{out_size}x{out_size} heatmaps; use --set data.image_size={out_size}"
        )


@holds_locks  # the run it writes is locked until it returns
def train_decoder(cfg: Config, reporter: Reporter | None = None, run: Run | None = None) -> Run:
    """Run the job into ``run`` (created when None); a run holding ``train_state.pt`` is resumed."""
    reporter = reporter or NullReporter()
    device = resolve_device(cfg.run.device)
    configure_threads(cfg.run.num_threads)
    distributed.init_from_env(cfg.run.device)  # under torchrun: join the process group (else a no-op)
    reporter = distributed.main_only(reporter)  # under torchrun: progress and log lines once, from rank 0
    check_image_size(cfg)
    clf_path = check_classifier(cfg, reporter)  # before any data work
    run = run or create_run(cfg, COMMAND)
    lock_run(run.path, COMMAND)  # a run given by the caller is locked too (this process may hold it already)
    state = resume_state(run, cfg, COMMAND, reporter)
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    root, size, d = data_root(cfg), cfg.data.image_size, cfg.decoder
    phases = PhaseTimer(device)  # where the command's time goes, saved in run.json (bench/gpu.sh reads it)

    splits = load_id_splits(cfg.data.id, root, size, cfg.data.strict)
    classifier = open_classifier(clf_path, cfg, num_classes=len(splits["train"].classes or []))
    if state is not None and state.get("classifier_fingerprint") not in (None, classifier.fingerprint):
        raise RunError(
            f"cannot resume {run.path}: it was trained on another classifier than {clf_path} "
            f"(fingerprint {state.get('classifier_fingerprint')} != {classifier.fingerprint}); pass the original --classifier"
        )
    run.update(classifier=str(Path(clf_path).resolve()))
    kept = validation_rows(splits["train"], cfg.data.val_id_source, cfg.data.val_id_per_class, classifier.meta,
                           str(clf_path))[0]  # the validation ID rows stay out
    id_rows = kept[seeded_indices(len(kept), d.num_id, cfg.run.seed)]  # rows of the whole training split
    id_train = splits["train"] if len(id_rows) == len(splits["train"]) else splits["train"].subset(id_rows)
    pool_size: dict[str, int] = {}
    chosen: dict[str, torch.Tensor] = {}

    def select(n: int) -> torch.Tensor:
        pool_size["n"] = n
        if "idx" not in chosen:
            num_ood = min(d.num_ood, n)  # a pool smaller than decoder.num_ood is used whole (said below)
            if state is not None:  # the indices the run drew, never a new draw
                chosen["idx"] = _saved_indices(run, n, num_ood)
            else:
                chosen["idx"] = sample_ood_indices(n, num_ood, cfg.run.seed)
        return chosen["idx"]

    pool = load_image_set(cfg.data.aux, root, size, cfg.data.strict, select=select, hold_out_classes=cfg.data.val_aux_classes)
    notes = [n for s in (id_train, pool) if (n := skip_note(s))]
    for note in notes:
        reporter.log(note)
    if len(pool) < 1:
        raise DataError(f"auxiliary set '{cfg.data.aux}' yielded no images")
    if pool_size.get("n", d.num_ood) < d.num_ood:
        reporter.log(f"the auxiliary set '{cfg.data.aux}' holds {pool_size['n']} images, fewer than decoder.num_ood = {d.num_ood}: "
                     f"training on all {pool_size['n']}")
    phases.mark("data")

    num_maps = d.fw_layers - 1
    model = classifier.model.to(device)
    available = len(model.stage_maps(torch.zeros(1, 3, size, size, device=device)))
    if num_maps > available:
        raise ConfigError(f"--fw-layers {d.fw_layers} needs {num_maps} stage maps, but {classifier.arch} offers {available}; use at most {available + 1}")
    reporter.log(f"ID train {len(id_train)} images, outliers {len(pool)} of {pool_size.get('n', len(pool))}")
    # one pass over both, in the order the decoder's data keeps them: the stage maps (with fw_layers > 1 most
    # of the memory) are written once into place, never held twice as ID and outlier parts and their join
    feats = extract_features(model, torch.cat([id_train.images, pool.images]), device, cfg.evaluate.batch_size, num_maps,
                             reporter=reporter, description="ID and outlier features")
    phases.mark("features")
    data, proto = build_decoder_data(id_train.images, pool.images, feats, device, d.prototype_k)
    phases.mark("prototypes")

    if is_external_arch(classifier.arch):
        spec = decoder_spec_of(model, size, d.fw_layers)
    else:
        spec = decoder_spec_for(classifier.arch, model.feature_dim, classifier.num_classes, d.fw_layers)
    decoder = HeatmapDecoder(spec)
    id_feats = feats.features[: len(id_train)]  # the true extremes over the ID training features
    decoder.set_feature_range(float(id_feats.min()), float(id_feats.max()))
    start_epoch = 0
    optimizer_state = None
    losses: list[float] = []
    if state is not None:
        decoder.load_state_dict(state["decoder"])
        optimizer_state = state["optimizer"]
        if (state.get("config") or {}).get("decoder", {}).get("lr", d.lr) != d.lr:  # logged by resume_state
            optimizer_state = {**optimizer_state, "param_groups": [{**g, "lr": d.lr} for g in optimizer_state["param_groups"]]}
        start_epoch = int(state["epoch"])
        losses = [float(v) for v in state["losses"]]
        restore_rng(state.get("rng"))
        reporter.log(f"resuming {run.path} after epoch {start_epoch}")
    elif distributed.is_main_process():  # under torchrun only rank 0 writes files
        atomic_write_json(
            run.file(OOD_FILE),
            {
                "aux": cfg.data.aux,
                "pool_size": pool_size.get("n", len(pool)),
                "seed": cfg.run.seed,
                "indices": chosen["idx"].tolist() if "idx" in chosen else list(range(len(pool))),
                "names": pool.names,
                "prototype_id_rows": proto.tolist(),  # per outlier
                "prototype_k": d.prototype_k,  # > 1: each row lists its k nearest, the target is their mean
            },
        )
    run.update(status="running", epochs_done=start_epoch, losses=losses, skipped_images=notes)
    meta: dict[str, Any] = {
        "classifier_path": str(clf_path),
        "id_dataset": cfg.data.id,
        "aux": cfg.data.aux,
        "num_ood": len(pool),
        "num_id": len(id_train),
        "id_rows": id_rows,  # rows of the ID training split the decoder trains on
        "seed": cfg.run.seed,
        "config": cfg.to_dict(),
    }
    ckpt = Checkpointer(run, COMMAND, d.checkpoint_every, d.epochs, cfg.run.checkpoint_interval_s)
    ckpt.saved_epoch = start_epoch or None

    epoch_seconds: list[float] = list(run.info.get("epoch_seconds", []))[:start_epoch]

    def on_epoch_end(epoch: int, stats: dict[str, float], dec: HeatmapDecoder, opt: torch.optim.Optimizer) -> None:
        if not all_finite(dec):  # never checkpoint broken weights
            raise TrainingDivergedError("non-finite weights")
        losses.append(stats["loss"])
        epoch_seconds.append(round(stats["seconds"], 3))
        ckpt.epoch_end(
            epoch,
            {
                "decoder": dec.state_dict(),
                "optimizer": opt.state_dict(),
                "losses": list(losses),
                "rng": capture_rng(),
                "classifier_fingerprint": classifier.fingerprint,
                "config": cfg.to_dict(),
            },
            losses=list(losses),
            epoch_seconds=list(epoch_seconds),
        )

    lr = float(optimizer_state["param_groups"][0]["lr"]) if optimizer_state else d.lr
    with ckpt.guard(reporter, "decoder", "decoder.lr", lambda: len(losses) + 1, lambda: lr):
        fit_decoder(decoder, data, d, cfg.run.seed, device, start_epoch, optimizer_state, on_epoch_end, reporter, compile=cfg.run.compile)
    phases.mark("train")
    final = losses[-1] if losses else None
    floor: dict[str, Any] | None = None
    stuck: dict[str, int] | None = None
    if distributed.is_main_process():  # under torchrun only rank 0 writes files
        stuck = _check_stuck_pixels(decoder, data, cfg, device, reporter)
        if d.noise_floor_quantile > 0:
            floor = _set_noise_floor(decoder, model, splits["train"].images, kept, id_rows, cfg, device, reporter)
            phases.mark("noise_floor")
        save_decoder(decoder.cpu(), classifier, run.file("decoder.pt"),
                     {**meta, "epochs": d.epochs, "final_loss": final, "noise_floor": floor})
    run.mark_complete(
        classifier=str(Path(clf_path).resolve()), decoder=str(run.file("decoder.pt").resolve()), final_loss=final,
        phase_seconds=phases.seconds, noise_floor=floor, stuck_pixels=stuck,
    )
    run.info = distributed.broadcast_object(run.info)  # every rank returns rank 0's result
    return run


def _check_stuck_pixels(decoder: HeatmapDecoder, data: DecoderData, cfg: Config, device: torch.device,
                        reporter: Reporter) -> dict[str, int]:
    """Count the heatmap pixels stuck bright on the decoder's own ID training images (engine/heatmaps.py),
    for the run's record and the command's warning."""
    rows = seeded_indices(data.n_id, STUCK_CHECK_IMAGES, cfg.run.seed)
    stuck = stuck_pixels(decoder, data.feats.take(rows), device, cfg.evaluate.batch_size)
    side = decoder.spec.out_size
    reporter.log(f"stuck heatmap pixels: {stuck} of {side * side} (lit on all {len(rows)} ID images checked)")
    return {"pixels": stuck, "of": side * side, "images": len(rows)}


FLOOR_IMAGES = 2000  # ID images the noise floor is measured on: 2M pixel magnitudes at 32x32


def _set_noise_floor(decoder: HeatmapDecoder, model: torch.nn.Module, train_images: torch.Tensor, kept: torch.Tensor,
                     id_rows: torch.Tensor, cfg: Config, device: torch.device, reporter: Reporter) -> dict[str, Any]:
    """Measure the decoder's noise floor on ID training images it did not train on (its own, when it trained
    on all of them) and store it in the decoder; returns what was measured, for the run's record."""
    pool = kept[~torch.isin(kept, id_rows)]  # not trained on; the validation rows (not in kept) stay out of everything
    source = "ID training images the decoder did not train on"
    if len(pool) == 0:
        pool, source = id_rows, "the decoder's own ID training images (it trained on all of them)"
    rows = pool[seeded_indices(len(pool), FLOOR_IMAGES, cfg.run.seed)]
    feats = extract_features(model, train_images[rows], device, cfg.evaluate.batch_size, decoder.spec.fw_layers - 1,
                             description="noise floor features")
    q = cfg.decoder.noise_floor_quantile
    value = measure_noise_floor(decoder, feats, q, device, cfg.evaluate.batch_size)
    decoder.noise_floor.fill_(value)
    reporter.log(f"noise floor {value:.3f}: the {q:.4g} quantile of heatmap pixels on {len(rows)} {source}")
    return {"quantile": q, "value": value, "images": len(rows), "source": source}

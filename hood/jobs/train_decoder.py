"""``hood train-decoder``: the engine's one decoder recipe (:func:`~hood.engine.decoder_training.train_heatmap_decoder`)
on the configured ID set and outlier pool, checkpointed as it trains.

The features of the ID training images it trained on are kept beside the decoder (:mod:`hood.jobs.id_features`),
for evaluate's fits. The sampled outliers are written to ``ood_samples.json`` before the first epoch; ``--resume
RUN`` reads them back instead of sampling again, checks the classifier is the same one (by fingerprint), restores the
decoder, optimizer and RNG states, and continues so that the result equals an uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from hood.config import Config
from hood.data.sources import load_id_splits, load_image_set
from hood.data.validation import decoder_train_rows
from hood.engine import distributed
from hood.engine.decoder_training import Resume, train_heatmap_decoder
from hood.engine.runtime import PhaseTimer, configure_threads, resolve_device, seed_everything, seeded_indices
from hood.errors import ConfigError, DataError, RunError, TrainingDivergedError
from hood.fileio import atomic_write_json
from hood.jobs.classes import RUN_KEY, names_to_record
from hood.jobs.id_features import feature_key, save_id_features
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
    run.update(classifier=str(Path(clf_path).resolve()),
               **{RUN_KEY: names_to_record(classifier.classes, splits["train"].classes, classifier.num_classes)})
    kept = decoder_train_rows(splits["train"], cfg.data.val_id_source, classifier.meta, str(clf_path))  # validation rows stay out
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
                chosen["idx"] = seeded_indices(n, num_ood, cfg.run.seed)
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
    if is_external_arch(classifier.arch):
        spec = decoder_spec_of(model, size, d.fw_layers)
    else:
        spec = decoder_spec_for(classifier.arch, model.feature_dim, classifier.num_classes, d.fw_layers)
    resume = None
    if state is not None:
        resume = Resume(state["decoder"], state["optimizer"], int(state["epoch"]), [float(v) for v in state["losses"]])
        restore_rng(state.get("rng"))
        reporter.log(f"resuming {run.path} after epoch {resume.epoch}")
    start_epoch = resume.epoch if resume else 0

    def before_training(proto: torch.Tensor) -> None:
        if state is None and distributed.is_main_process():  # under torchrun only rank 0 writes files
            atomic_write_json(run.file(OOD_FILE), {
                "aux": cfg.data.aux,
                "pool_size": pool_size.get("n", len(pool)),
                "seed": cfg.run.seed,
                "indices": chosen["idx"].tolist() if "idx" in chosen else list(range(len(pool))),
                "names": pool.names,
                "prototype_id_rows": proto.tolist(),  # per outlier
                "prototype_k": d.prototype_k,  # > 1: each row lists its k nearest, the target is their mean
            })
        run.update(status="running", epochs_done=start_epoch, losses=resume.losses if resume else [], skipped_images=notes)

    losses: list[float] = list(resume.losses) if resume else []
    ckpt = Checkpointer(run, COMMAND, d.epochs, cfg.run.checkpoint_interval_s)
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

    # the rows the noise floor is measured on: ID training images the decoder did not train on (its own, when it
    # trained on all of them); the validation rows (not in kept) stay out of everything
    unseen = kept[~torch.isin(kept, id_rows)]
    floor_rows, floor_source = (unseen, "ID training images the decoder did not train on") if len(unseen) else \
        (id_rows, "the decoder's own ID training images (it trained on all of them)")
    with ckpt.guard(reporter, "decoder", "decoder.lr", lambda: len(losses) + 1, lambda: d.lr):
        trained = train_heatmap_decoder(
            model, spec, id_train.images, pool.images, d, cfg.run.seed, device,
            floor_images=splits["train"].images[floor_rows] if d.noise_floor_quantile > 0 else None, floor_source=floor_source,
            resume=resume, before_training=before_training, on_epoch_end=on_epoch_end, reporter=reporter,
            batch_size=cfg.evaluate.batch_size, compile=cfg.run.compile, phases=phases,
        )
    stuck = trained.stuck
    reporter.log(f"stuck heatmap pixels: {stuck['pixels']} of {stuck['of']} (lit on all {stuck['images']} ID images checked)")
    final = trained.losses[-1] if trained.losses else None
    meta: dict[str, Any] = {
        "classifier_path": str(clf_path),
        "id_dataset": cfg.data.id,
        "aux": cfg.data.aux,
        "num_ood": len(pool),
        "num_id": len(id_train),
        "id_rows": id_rows,  # rows of the ID training split the decoder trains on
        "seed": cfg.run.seed,
        "config": cfg.to_dict(),
        "epochs": d.epochs,
        "final_loss": final,
        "noise_floor": trained.noise_floor,
    }
    if distributed.is_main_process():  # under torchrun only rank 0 writes files
        save_decoder(trained.decoder, classifier, run.file("decoder.pt"), meta)
        save_id_features(run, trained.id_features, id_rows, id_train.images, feature_key(classifier.fingerprint, cfg, device),
                         reporter)
    run.mark_complete(
        classifier=str(Path(clf_path).resolve()), decoder=str(run.file("decoder.pt").resolve()), final_loss=final,
        phase_seconds=phases.seconds, noise_floor=trained.noise_floor, stuck_pixels=stuck,
    )
    run.info = distributed.broadcast_object(run.info)  # every rank returns rank 0's result
    return run

"""``hood train-decoder``: features once, prototypes, then the decoder epochs, checkpointed each epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hood.config import Config
from hood.data.sources import load_id_splits, load_image_set
from hood.engine.decoder_training import build_decoder_data, fit_decoder, sample_ood_indices
from hood.engine.features import extract_features
from hood.engine.progress import NullReporter, Reporter
from hood.engine.runtime import configure_threads, resolve_device, seed_everything
from hood.errors import DataError, RunError
from hood.fileio import atomic_write_json
from hood.jobs.common import resume_state, check_classifier, data_root, open_classifier, seeded_subset, skip_note
from hood.models.checkpoint import save_checkpoint, save_decoder
from hood.models.decoder import HeatmapDecoder, decoder_spec_for
from hood.runs import Run, create_run


def train_decoder(cfg: Config, reporter: Reporter | None = None, run: Run | None = None) -> Run:
    """Run the job into ``run`` (created when None); a run holding ``train_state.pt`` is resumed."""
    reporter = reporter or NullReporter()
    device = resolve_device(cfg.run.device)
    configure_threads(cfg.run.num_threads)
    clf_path = check_classifier(cfg, reporter)  # before any data work
    run = run or create_run(cfg, "train-decoder")
    state = resume_state(run)
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    root, size, d = data_root(cfg), cfg.data.image_size, cfg.decoder

    splits = load_id_splits(cfg.data.id, root, size, cfg.data.strict)
    classifier = open_classifier(clf_path, cfg, num_classes=len(splits["train"].classes or []))
    id_train = seeded_subset(splits["train"], d.num_id, cfg.run.seed)
    pool_size: dict[str, int] = {}

    def select(n: int) -> torch.Tensor:
        pool_size["n"] = n
        return sample_ood_indices(n, d.num_ood, cfg.run.seed)

    pool = load_image_set(cfg.data.aux, root, size, cfg.data.strict, select=select)
    for s in (id_train, pool):
        if note := skip_note(s):
            reporter.log(note)
    if len(pool) < 1:
        raise DataError(f"auxiliary set '{cfg.data.aux}' yielded no images")

    num_maps = d.fw_layers - 1
    model = classifier.model.to(device)
    if num_maps > len(model.stage_maps(torch.zeros(1, 3, size, size, device=device))):
        raise RunError(f"--fw-layers {d.fw_layers} is more than {classifier.arch} offers")
    reporter.log(f"ID train {len(id_train)} images, outliers {len(pool)} of {pool_size.get('n', len(pool))}")
    id_feats = extract_features(model, id_train.images, device, cfg.evaluate.batch_size, num_maps, reporter=reporter, description="ID features")
    ood_feats = extract_features(model, pool.images, device, cfg.evaluate.batch_size, num_maps, reporter=reporter, description="outlier features")
    data, proto = build_decoder_data(id_train.images, id_feats, pool.images, ood_feats, device)

    spec = decoder_spec_for(classifier.arch, model.feature_dim, classifier.num_classes, d.fw_layers)
    decoder = HeatmapDecoder(spec)
    decoder.set_feature_range(float(id_feats.features.min()), float(id_feats.features.max()))
    start_epoch = 0
    optimizer_state = None
    losses: list[float] = []
    if state is not None:
        decoder.load_state_dict(state["decoder"])
        optimizer_state = state["optimizer"]
        start_epoch = int(state["epoch"])
        losses = list(state["losses"])
        reporter.log(f"resuming {run.path} after epoch {start_epoch}")
    else:
        atomic_write_json(
            run.file("ood_samples.json"),
            {
                "aux": cfg.data.aux,
                "pool_size": pool_size.get("n", len(pool)),
                "seed": cfg.run.seed,
                "indices": select(pool_size["n"]).tolist() if "n" in pool_size else list(range(len(pool))),
                "names": pool.names,
                "prototype_id_rows": proto.tolist(),
            },
        )
    meta: dict[str, Any] = {
        "classifier_path": str(clf_path),
        "id_dataset": cfg.data.id,
        "aux": cfg.data.aux,
        "num_ood": len(pool),
        "num_id": len(id_train),
        "seed": cfg.run.seed,
        "config": cfg.to_dict(),
    }

    def on_epoch_end(epoch: int, loss: float, dec: HeatmapDecoder, opt: torch.optim.Optimizer) -> None:
        losses.append(loss)
        if epoch % d.checkpoint_every == 0 or epoch == d.epochs:
            save_checkpoint(
                {"decoder": dec.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "losses": losses},
                run.file("train_state.pt"),
            )
            run.update(epochs_done=epoch, losses=losses)

    fit_decoder(decoder, data, d, cfg.run.seed, device, start_epoch, optimizer_state, on_epoch_end, reporter)
    save_decoder(decoder.cpu(), classifier, run.file("decoder.pt"), {**meta, "epochs": d.epochs, "final_loss": losses[-1] if losses else None})
    run.mark_complete(classifier=str(Path(clf_path)), decoder=str(run.file("decoder.pt")), final_loss=losses[-1] if losses else None)
    return run

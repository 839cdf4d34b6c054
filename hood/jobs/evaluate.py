"""``hood evaluate``: score the ID test set and each OOD set with every requested detector.

OOD sets are streamed: one is loaded, featurized, scored and released before the next, so memory does
not grow with their number. Per-sample scores go to ``scores/<method>/<set>.npz`` so metrics can be
recomputed without a GPU; ``results.json`` / ``results.csv`` hold the table.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hood.config import Config
from hood.data.sources import dataset_label, load_id_splits, load_image_set
from hood.detectors import DETECTORS, Detector, DetectorContext
from hood.engine.features import FeatureSet, extract_features
from hood.engine.progress import NullReporter, Reporter
from hood.engine.runtime import configure_threads, resolve_device, seed_everything
from hood.errors import ConfigError
from hood.fileio import atomic_save_with, atomic_write_json, atomic_write_text
from hood.jobs.common import check_classifier, data_root, decoder_run, open_classifier, skip_note
from hood.metrics import CONVENTION_CAPTION, id_threshold, mean_metrics, ood_metrics
from hood.models.checkpoint import load_decoder
from hood.runs import Run


@dataclass
class Evaluation:
    run: Run
    results: dict[str, Any]


def resolve_methods(methods: list[str]) -> list[str]:
    if methods == ["all"]:
        return list(DETECTORS)
    unknown = [m for m in methods if m not in DETECTORS]
    if unknown:
        raise ConfigError(f"unknown method '{unknown[0]}'; available: {', '.join(DETECTORS)}")
    return methods


def save_scores(run: Run, method: str, set_name: str, scores: np.ndarray) -> None:
    path = run.path / "scores" / method / f"{set_name}.npz"
    atomic_save_with(path, lambda fh: np.savez_compressed(fh, scores=scores.astype(np.float32)))


def results_csv(results: dict[str, Any]) -> str:
    """Tidy form: one row per (method, set, metric)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "set", "metric", "value"])
    for method, per_set in results["results"].items():
        for set_name, metrics in per_set.items():
            for k, v in metrics.items():
                w.writerow([method, set_name, k, v])
    return buf.getvalue()


def evaluate(cfg: Config, run_path: str | None = None, reporter: Reporter | None = None) -> Evaluation:
    reporter = reporter or NullReporter()
    device = resolve_device(cfg.run.device)
    configure_threads(cfg.run.num_threads)
    methods = resolve_methods(cfg.evaluate.methods)
    run = decoder_run(run_path, cfg, reporter) if "heatmap" in methods or run_path else None
    if cfg.model.classifier is None and run is not None:
        cfg.model.classifier = run.info.get("classifier")
    clf_path = check_classifier(cfg, reporter)
    if run is None:
        from hood.runs import create_run

        run = create_run(cfg, "evaluate")
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    root, size = data_root(cfg), cfg.data.image_size

    splits = load_id_splits(cfg.data.id, root, size, cfg.data.strict)
    classifier = open_classifier(clf_path, cfg, num_classes=len(splits["train"].classes or []))
    model = classifier.model.to(device)
    decoder = None
    if "heatmap" in methods:
        decoder, _ = load_decoder(run.file("decoder.pt"), classifier)
    ctx = DetectorContext(classifier=model, device=device, decoder=decoder, options={"config": cfg})
    detectors: dict[str, Detector] = {m: DETECTORS[m](ctx) for m in methods}
    num_maps = max(d.num_maps for d in detectors.values())

    if any(d.needs_fit for d in detectors.values()):
        train_feats = extract_features(model, splits["train"].images, device, cfg.evaluate.batch_size, 0, splits["train"].labels, reporter, "ID train features")
        for d in detectors.values():
            if d.needs_fit:
                d.fit(train_feats)
        del train_feats

    id_test = splits["test"]
    if cfg.data.id_test_count is not None:
        id_test = id_test.subset(slice(0, cfg.data.id_test_count))
    del splits
    id_feats = extract_features(model, id_test.images, device, cfg.evaluate.batch_size, num_maps, id_test.labels, reporter, "ID test features")
    acc = float((id_feats.preds == id_test.labels).float().mean()) if id_test.labels is not None else None
    id_scores = {m: _score(d, id_feats, id_test.images, ctx) for m, d in detectors.items()}
    for m, s in id_scores.items():
        save_scores(run, m, "id", s)
    del id_feats

    ood_count = cfg.data.ood_count or max(1, len(id_test) // 5)
    per_method: dict[str, dict[str, dict[str, float]]] = {m: {} for m in methods}
    notes = []
    for spec in cfg.data.ood:
        name = dataset_label(spec)
        ood = load_image_set(spec, root, size, cfg.data.strict)
        if note := skip_note(ood):
            notes.append(note)
            reporter.log(note)
        ood = ood.subset(slice(0, ood_count))  # the protocol: the first len(ID test)/5 images
        feats = extract_features(model, ood.images, device, cfg.evaluate.batch_size, num_maps, None, reporter, f"{name} features")
        for m, d in detectors.items():
            scores = _score(d, feats, ood.images, ctx)
            save_scores(run, m, name, scores)
            per_method[m][name] = {**ood_metrics(id_scores[m], scores, cfg.evaluate.fpr_convention), "n": len(scores)}
        del ood, feats

    results: dict[str, Any] = {
        "id_dataset": cfg.data.id,
        "classifier": str(clf_path),
        "classifier_arch": classifier.arch,
        "id_test_accuracy": acc,
        "n_id": len(id_test),
        "fpr_convention": cfg.evaluate.fpr_convention,
        "caption": CONVENTION_CAPTION[cfg.evaluate.fpr_convention],
        "results": {
            m: {**per_set, "mean": {**mean_metrics(per_set), "n": sum(int(v["n"]) for v in per_set.values())}}
            for m, per_set in per_method.items() if per_set
        },
        "thresholds": {m: id_threshold(s) for m, s in id_scores.items()},
        "notes": notes,
    }
    atomic_write_json(run.file("results.json"), results)
    atomic_write_text(run.file("results.csv"), results_csv(results))
    if run.info.get("command") == "evaluate":
        run.mark_complete()
    else:
        run.update(evaluated=True)
    return Evaluation(run, results)


def _score(d: Detector, feats: FeatureSet, images: torch.Tensor, ctx: DetectorContext) -> np.ndarray:
    if d.needs_images:
        return d.score_images(images)  # type: ignore[attr-defined]
    return d.score(feats)

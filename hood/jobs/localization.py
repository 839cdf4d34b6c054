"""``hood evaluate --localization``: does the heatmap mark *where* an image is foreign?

Each OOD set becomes composites (:mod:`hood.data.composites`): an ID image with one region pasted from the
set's images, whose mask is the ground truth. Per set, every pixel map (the decoder's heatmap and the
reference maps of :mod:`hood.detectors.pixel_maps`) is scored by pixel AUROC and AUPRO against the masks, and
every requested detector by how well it tells the composites from the ID images (image-level FPR95 / AUROC:
a composite is OOD). The composites are built from the same ID and OOD images as the evaluate tables (test
sets, or with ``--validation`` the validation split, where settings are chosen), seeded by
``data.ood_draw_seed`` and the set's name, so every run and method sees the same ones.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hood.config import Config
from hood.data.composites import AREA, Composites, make_composites
from hood.data.sources import load_id_splits
from hood.detectors.heatmap import HeatmapDetector
from hood.detectors.pixel_maps import (
    REFERENCE_MAPS,
    centre_prior_map,
    class_mean_distance_map,
    class_mean_images,
    energy_gradient_map,
    heatmap_map,
    smoothed_heatmap_map,
)
from hood.engine.features import extract_features
from hood.engine.runtime import configure_threads, resolve_device, seed_everything
from hood.errors import ConfigError
from hood.fileio import atomic_write_json
from hood.jobs.detectors import build_detectors, check_fit_rows, resolve_methods
from hood.jobs.evaluate import evaluation_plan, fit_detectors, lock_for_writing, score_set
from hood.jobs.lookup import check_set_names, data_root, decoder_run, open_classifier, open_decoder, preflight, run_classifier
from hood.jobs.plan import Plan
from hood.jobs.results import keep_table
from hood.locks import holds_locks
from hood.metrics import CONVENTION_CAPTION, aupro, mean_metrics, ood_metrics, pixel_auroc
from hood.progress import NullReporter, Reporter
from hood.runs import Run

MAPS = ("heatmap", "heatmap-smoothed", *REFERENCE_MAPS)
EXAMPLES = 4  # composites per set kept for the figure


@dataclass
class Localization:
    run: Run
    results: dict[str, Any]
    examples: dict[str, dict[str, np.ndarray]]  # per set: composites, masks and heatmaps of its first EXAMPLES


def file_name(validating: bool) -> str:
    return "validation-localization.json" if validating else "localization.json"


def composite_seed(seed: int, name: str) -> int:
    """One seed per set, independent of the order the sets are named in."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63


@holds_locks
def localize(cfg: Config, run_path: str | None = None, reporter: Reporter | None = None) -> Localization:
    reporter = reporter or NullReporter()
    device = resolve_device(cfg.run.device)
    configure_threads(cfg.run.num_threads)
    validating = cfg.evaluate.validation
    methods = resolve_methods(cfg.evaluate.methods)
    if cfg.evaluate.benchmark is not None:  # a protocol of test tables, not of composites: not silently ignored
        raise ConfigError(f"--localization makes composites of the sets of --ood, and benchmark {cfg.evaluate.benchmark} "
                          f"fixes its own; drop --benchmark (and name the sets with --ood)")
    check_set_names(cfg, validating)
    preflight(cfg, [cfg.data.id, *([] if validating else cfg.data.ood)])  # every missing set named before any work
    run = lock_for_writing(decoder_run(run_path, cfg, reporter))  # the heatmap is what is measured: a decoder run
    clf_path = run_classifier(cfg, run, reporter)
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    splits = load_id_splits(cfg.data.id, data_root(cfg), cfg.data.image_size, cfg.data.strict)
    classifier = open_classifier(clf_path, cfg, num_classes=len(splits["train"].classes or []))
    model = classifier.model.to(device)
    decoder, meta = open_decoder(run, classifier, cfg.data.image_size)
    plan = evaluation_plan(cfg, splits, meta, classifier, clf_path, run, None, reporter)  # evaluate's rows and fits
    detectors, combos = build_detectors(list(dict.fromkeys(["heatmap", *methods])), model, cfg, device, decoder)
    check_fit_rows(detectors, len(plan.fit))
    train = plan.fit
    if train.labels is None:  # before the fits' pass, not after it
        raise ConfigError(f"the ID set {cfg.data.id} has no labels; the class-mean reference map needs them")
    heatmap = detectors["heatmap"]
    assert isinstance(heatmap, HeatmapDetector)
    num_maps = max(d.num_maps for d in detectors.values())
    fit_detectors(detectors, combos, run, model, plan, classifier.fingerprint, cfg, device, reporter)
    means = class_mean_images(train.images, train.labels, len(train.classes or []) or int(train.labels.max()) + 1)
    del splits
    seconds: dict[str, float] = {}
    id_set = plan.id
    id_feats = extract_features(model, id_set.images, device, cfg.evaluate.batch_size, num_maps, None, reporter, "ID features")
    id_scores = score_set(detectors, combos, id_feats, id_set.images, seconds)
    del id_feats

    per_set: dict[str, dict[str, Any]] = {}
    examples: dict[str, dict[str, np.ndarray]] = {}
    for name, load in plan.ood:
        ood = load()
        count = min(plan.ood_count or len(ood), len(id_set))
        comp = make_composites(id_set.images, ood.images, count, composite_seed(cfg.data.ood_draw_seed, name))
        del ood
        feats = extract_features(model, comp.images, device, cfg.evaluate.batch_size, num_maps, None, reporter,
                                 f"{name} composites")
        scores = score_set(detectors, combos, feats, comp.images, seconds)
        reporter.log(f"{name}: pixel maps of {len(comp)} composites")
        maps = {"heatmap": heatmap_map(heatmap, feats), "heatmap-smoothed": smoothed_heatmap_map(heatmap, feats),
                "energy-gradient": energy_gradient_map(model, comp.images, device),
                "class-mean-distance": class_mean_distance_map(comp.images, feats.preds.cpu(), means),
                "centre-prior": centre_prior_map(len(comp), *comp.images.shape[2:])}
        per_set[name] = _set_results(comp, maps, scores, id_scores, methods, cfg.evaluate.fpr_convention)
        examples[name] = {"images": comp.images[:EXAMPLES].numpy(), "masks": comp.masks[:EXAMPLES].numpy(),
                          "heatmaps": maps["heatmap"][:EXAMPLES].numpy(), "smoothed": maps["heatmap-smoothed"][:EXAMPLES].numpy()}
        del feats, comp, maps

    results = _results(cfg, plan, methods, per_set, len(id_set), str(clf_path))
    if run.file(file_name(validating)).is_file():  # a second --localization adds a table, it does not replace one
        results["notes"] = [f"the earlier {file_name(validating)} is kept as {keep_table(run, file_name(validating))}"]
    atomic_write_json(run.file(file_name(validating)), results)
    return Localization(run, results, examples)


def _set_results(comp: Composites, maps: dict[str, torch.Tensor], scores: dict[str, np.ndarray], id_scores: dict[str, np.ndarray],
                 methods: list[str], convention: str) -> dict[str, Any]:
    masks = comp.masks.numpy()
    shapes = np.array(comp.shapes)
    pixel = {}
    for m, values in maps.items():
        v = values.numpy()
        pixel[m] = {"pixel_auroc": pixel_auroc(v, masks), "aupro": aupro(v, masks),
                    # per shape, so a map that only finds rectangles shows it
                    **{f"pixel_auroc_{s}": pixel_auroc(v[shapes == s], masks[shapes == s]) for s in sorted(set(comp.shapes))}}
    detection = {m: ood_metrics(id_scores[m], scores[m], convention) for m in methods}
    return {"n": len(comp), "area": float(masks.mean()), "maps": pixel, "detection": detection}


def _results(cfg: Config, plan: Plan, methods: list[str], per_set: dict[str, dict[str, Any]], n_id: int, classifier: str) -> dict[str, Any]:
    """What localization.json holds: per set the pixel maps' metrics and the detectors' image-level ones, and the
    mean of each over the sets."""
    mean_maps = {m: {k: float(np.mean([s["maps"][m][k] for s in per_set.values()])) for k in ("pixel_auroc", "aupro")} for m in MAPS}
    mean_detection = {m: mean_metrics({n: s["detection"][m] for n, s in per_set.items()}) for m in methods}
    return {
        "kind": "localization",
        "id_dataset": f"{cfg.data.id} (validation split)" if plan.validation else cfg.data.id,
        "classifier": classifier,
        "n_id": n_id,
        "methods": methods,
        "maps": list(MAPS),
        "composites": {"area": list(AREA), "shapes": ["rectangle", "blob"], "seed": cfg.data.ood_draw_seed,
                       "rule": "one region per composite, pasted at the same place from an image of the set"},
        "fpr_convention": cfg.evaluate.fpr_convention,
        "caption": CONVENTION_CAPTION[cfg.evaluate.fpr_convention],
        "sets": per_set,
        "mean": {"maps": mean_maps, "detection": mean_detection},
        **({"validation": plan.validation} if plan.validation else {}),
    }

"""Pixel AUROC / AUPRO of variants of a decoder's heatmap on validation composites, to choose how a localizing
map is read without looking at a test set: the map as drawn (noise floor off), without the floor, and box- or
Gaussian-smoothed. The composites are those of ``hood evaluate --localization --validation`` (same seed rule).

    python research/localization_variants.py RUN --dataset CIFAR10.tar.gz [--val-ood omniglot-val.tar.gz] [--count 1000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from hood.config import resolve
from hood.data.composites import make_composites
from hood.data.sources import load_id_splits
from hood.detectors.heatmap import HeatmapDetector
from hood.detectors.pixel_maps import gaussian_blur, heatmap_map
from hood.engine.features import extract_features
from hood.engine.heatmaps import raw_heatmaps
from hood.engine.runtime import resolve_device
from hood.jobs.evaluate import evaluation_plan
from hood.jobs.localization import composite_seed
from hood.jobs.lookup import data_root, open_classifier, open_decoder
from hood.metrics import aupro, pixel_auroc
from hood.progress import NullReporter
from hood.runs import open_run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--val-ood", default="")
    ap.add_argument("--count", type=int, default=1000)
    a = ap.parse_args()
    run = open_run(a.run)
    saved = yaml.safe_load(run.file("config.yaml").read_text())
    named = {"data.id": a.dataset, "data.val_ood": [s for s in a.val_ood.split(",") if s] + ["uniform-noise"],
             "model.classifier": run.info["classifier"], "model.arch": saved["model"]["arch"], "run.device": "cpu",
             "data.val_id_source": saved["data"].get("val_id_source") or "test", "data.aux": saved["data"].get("aux"),
             "evaluate.validation": True}
    cfg = resolve(None, named, None)
    device = resolve_device("cpu")
    splits = load_id_splits(cfg.data.id, data_root(cfg), cfg.data.image_size, False)
    clf_path = Path(run.info["classifier"])
    clf = open_classifier(clf_path, cfg, 10)
    decoder, meta = open_decoder(run, clf, cfg.data.image_size)
    plan = evaluation_plan(cfg, splits, meta, clf, clf_path, run, None, NullReporter())  # the validation split
    det = HeatmapDetector(clf.model, decoder, device="cpu")
    out = {}
    for name, load in plan.ood:
        ood = load()
        comp = make_composites(plan.id.images, ood.images, min(a.count, len(ood), len(plan.id)), composite_seed(cfg.data.ood_draw_seed, name))
        feats = extract_features(clf.model, comp.images, device, 500, det.num_maps)
        drawn = heatmap_map(det, feats)
        with raw_heatmaps(decoder, device):
            raw = det.heatmaps_of(feats).abs().amax(1)
        variants = {"drawn": drawn, "raw": raw, "raw-gauss1": gaussian_blur(raw, 1.0), "raw-gauss2": gaussian_blur(raw, 2.0),
                    "raw-gauss3": gaussian_blur(raw, 3.0), "drawn-gauss2": gaussian_blur(drawn, 2.0)}
        masks = comp.masks.numpy()
        out[name] = {k: (round(pixel_auroc(v.numpy(), masks), 4), round(aupro(v.numpy(), masks), 4)) for k, v in variants.items()}
        print(name, json.dumps(out[name]), flush=True)
    keys = next(iter(out.values())).keys()
    print("mean", json.dumps({k: tuple(round(sum(v[k][i] for v in out.values()) / len(out), 4) for i in (0, 1)) for k in keys}))


if __name__ == "__main__":
    main()

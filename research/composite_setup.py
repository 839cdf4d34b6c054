"""What the localization research scripts share: their arguments, a decoder run opened on its validation split
as ``hood evaluate --localization --validation`` plans it, the validation composites of each set, and how a
map is scored on them."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from hood.config import Config, resolve
from hood.data.composites import Composites, make_composites
from hood.data.sources import load_id_splits
from hood.detectors.heatmap import HeatmapDetector
from hood.jobs.evaluate import evaluation_plan
from hood.jobs.localization import composite_seed
from hood.jobs.lookup import data_root, open_classifier, open_decoder
from hood.jobs.plan import Plan
from hood.metrics import aupro, pixel_auroc
from hood.models.checkpoint import LoadedClassifier
from hood.progress import NullReporter
from hood.runs import open_run


@dataclass
class ValidationRun:
    cfg: Config
    classifier: LoadedClassifier
    detector: HeatmapDetector
    plan: Plan

    def composites(self, count: int) -> Iterator[tuple[str, Composites]]:
        """Per validation OOD set, its composites with the validation ID images (the seed rule of evaluate)."""
        for name, load in self.plan.ood:
            ood = load()
            n = min(count, len(ood), len(self.plan.id))
            yield name, make_composites(self.plan.id.images, ood.images, n, composite_seed(self.cfg.data.ood_draw_seed, name))


def open_validation(run_dir: str, dataset: str, val_ood: str) -> ValidationRun:
    """``run_dir``'s classifier, decoder and validation plan on the CPU, with ``val_ood`` (comma-separated) and
    uniform noise as the validation sets beside the held-out pool classes."""
    run = open_run(run_dir)
    saved = yaml.safe_load(run.file("config.yaml").read_text())
    named = {"data.id": dataset, "data.val_ood": [s for s in val_ood.split(",") if s] + ["uniform-noise"],
             "model.classifier": run.info["classifier"], "model.arch": saved["model"]["arch"], "run.device": "cpu",
             "data.val_id_source": saved["data"].get("val_id_source") or "test", "data.aux": saved["data"].get("aux"),
             "evaluate.validation": True}
    cfg = resolve(None, named, None)
    splits = load_id_splits(cfg.data.id, data_root(cfg), cfg.data.image_size, False)
    clf_path = Path(run.info["classifier"])
    clf = open_classifier(clf_path, cfg, 10)
    decoder, meta = open_decoder(run, clf, cfg.data.image_size)
    plan = evaluation_plan(cfg, splits, meta, clf, clf_path, run, None, NullReporter())
    return ValidationRun(cfg, clf, HeatmapDetector(clf.model, decoder, device="cpu"), plan)


def score_maps(name: str, maps: dict[str, torch.Tensor], comp: Composites, out: dict[str, dict[str, tuple[float, float]]]) -> None:
    """Pixel AUROC and AUPRO of each map of one set's composites, into ``out[name]`` and printed as one line."""
    masks = comp.masks.numpy()
    out[name] = {k: (round(pixel_auroc(v.numpy(), masks), 4), round(aupro(v.numpy(), masks), 4)) for k, v in maps.items()}
    print(name, json.dumps(out[name]), flush=True)


def print_means(out: dict[str, dict[str, tuple[float, float]]]) -> None:
    """Each map's mean pixel AUROC and AUPRO over the sets."""
    keys = next(iter(out.values())).keys()
    print("mean", json.dumps({k: tuple(round(sum(v[k][i] for v in out.values()) / len(out), 4) for i in (0, 1)) for k in keys}))


def arguments(description: str) -> argparse.ArgumentParser:
    """The arguments every localization script takes: the run, the ID archive, the validation OOD sets, composites per set."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("run")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--val-ood", default="")
    ap.add_argument("--count", type=int, default=1000)
    return ap

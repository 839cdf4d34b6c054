"""``hood visualize``: heatmap grids for the ID test set and each OOD set of a trained decoder."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from hood.config import Config
from hood.data.images import ImageSet
from hood.data.sources import dataset_label, load_id_splits, load_image_set
from hood.detectors.heatmap import HeatmapDetector
from hood.engine.features import extract_features
from hood.engine.progress import NullReporter, Reporter
from hood.engine.runtime import configure_threads, resolve_device
from hood.errors import ConfigError
from hood.fileio import atomic_write_bytes
from hood.jobs.common import check_classifier, data_root, decoder_run, open_classifier
from hood.models.checkpoint import load_decoder
from hood.viz import heatmap_grid


def pick(scores: np.ndarray, n: int, how: str, seed: int) -> np.ndarray:
    """Indices of ``n`` images: the highest or lowest scoring, or a seeded random choice."""
    n = min(n, len(scores))
    if how == "top":
        return np.argsort(-scores, kind="stable")[:n]
    if how == "bottom":
        return np.argsort(scores, kind="stable")[:n]
    if how == "random":
        return np.sort(np.random.default_rng(seed).choice(len(scores), n, replace=False))
    raise ConfigError(f"--pick must be top, bottom or random, got '{how}'")


def visualize(
    cfg: Config, run_path: str | None, n: int = 8, how: str = "random", out_dir: str | None = None,
    reporter: Reporter | None = None,
) -> list[Path]:
    reporter = reporter or NullReporter()
    device = resolve_device(cfg.run.device)
    configure_threads(cfg.run.num_threads)
    run = decoder_run(run_path, cfg, reporter)
    if cfg.model.classifier is None:
        cfg.model.classifier = run.info.get("classifier")
    clf_path = check_classifier(cfg, reporter)
    root, size = data_root(cfg), cfg.data.image_size
    splits = load_id_splits(cfg.data.id, root, size, cfg.data.strict)
    classifier = open_classifier(clf_path, cfg, num_classes=len(splits["train"].classes or []))
    decoder, _ = load_decoder(run.file("decoder.pt"), classifier)
    det = HeatmapDetector(decoder, device)
    model = classifier.model.to(device)
    folder = Path(out_dir) if out_dir else run.path / "figures"
    written = [_grid(det, model, device, "id", splits["test"], n, how, cfg, folder)]
    del splits
    for spec in cfg.data.ood:  # one set in memory at a time
        s = load_image_set(spec, root, size, cfg.data.strict)
        written.append(_grid(det, model, device, dataset_label(spec), s, n, how, cfg, folder))
    return written


def _grid(det: HeatmapDetector, model: torch.nn.Module, device: torch.device, name: str, s: ImageSet,
          n: int, how: str, cfg: Config, folder: Path) -> Path:
    count = cfg.data.ood_count or 2000
    s = s.subset(slice(0, count))
    feats = extract_features(model, s.images, device, cfg.evaluate.batch_size, det.num_maps)
    scores = det.score(feats)
    idx = pick(scores, n, how, cfg.run.seed)
    h = det.heatmaps(feats.take(torch.as_tensor(idx)))
    img = heatmap_grid(s.images[torch.as_tensor(idx)], h, scores[idx], f"{name}: input / heatmap / overlay, score below ({how})")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    path = folder / f"heatmaps_{name}.png"
    atomic_write_bytes(path, buf.getvalue())
    return path

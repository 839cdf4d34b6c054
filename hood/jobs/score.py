"""``hood score``: apply a trained detector to a user's own images (files, folders, archives).

Each image is decoded as the evaluation protocol does (RGB, shorter side resized, center-cropped to the
run's resolution), run through the classifier once, and scored. The verdict compares the score with
the threshold ``hood evaluate`` stored in the run's ``results.json`` (the score that keeps 95% of ID test
images) unless one is given. Files that cannot be read are reported in the result, never fatal: one
broken file in a folder of thousands should not cost the rest.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hood.config import Config
from hood.data.images import UnreadableImage, decode_image, hwc_to_chw
from hood.data.readers import is_archive, list_members
from hood.detectors import DETECTORS, NEEDS_DECODER, Detector, DetectorContext
from hood.detectors.heatmap import HeatmapDetector
from hood.engine.features import FeatureSet, extract_features
from hood.engine.progress import NullReporter, Reporter
from hood.engine.runtime import configure_threads, resolve_device
from hood.errors import ConfigError, HoodError, RunError
from hood.fileio import atomic_write_bytes
from hood.jobs.common import check_classifier, open_classifier
from hood.models.checkpoint import load_decoder, safe_load
from hood.runs import Run
from hood.viz import overlay_image

CHUNK = 512  # images decoded and scored at a time: memory stays flat for folders of any size


@dataclass
class ScoredImage:
    file: str
    predicted_class: str | None = None
    score: float | None = None
    verdict: str = "unreadable"  # in | out | ? (no threshold) | unreadable
    error: str | None = None
    heatmap: str | None = None


@dataclass
class ScoreResult:
    run: str
    method: str
    threshold: float | None
    threshold_source: str
    images: list[ScoredImage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def scored(self) -> int:
        return sum(1 for i in self.images if i.score is not None)

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "images"}, "images": [asdict(i) for i in self.images]}


def iter_inputs(paths: list[str], size: int) -> Iterator[tuple[str, np.ndarray | None, str | None]]:
    """``(name, HWC uint8 image or None, error or None)`` for every image under ``paths``, in order."""
    for spec in paths:
        path = Path(spec).expanduser()
        if not path.exists():
            yield spec, None, "no such file or folder"
            continue
        if path.is_dir() or is_archive(path):
            try:
                members = list_members(path)
            except HoodError as err:
                yield spec, None, str(err)
                continue
            if not members:
                yield spec, None, "holds no image files"
            for m in members:
                name = f"{spec.rstrip('/')}/{m.relpath}"
                try:
                    yield name, decode_image(m.read(), size), None
                except (UnreadableImage, OSError) as err:
                    yield name, None, _why(err)
            continue
        try:
            yield spec, decode_image(path.read_bytes(), size), None
        except (UnreadableImage, OSError) as err:
            yield spec, None, _why(err)


def _why(err: Exception) -> str:
    """PIL's messages name an in-memory buffer (``<_io.BytesIO object at 0x..>``); say what it means."""
    text = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(err)).strip()
    if text.startswith("cannot identify image file"):
        text = "not a recognized image format"
    return f"not a readable image ({text or type(err).__name__})"


def _threshold(run: Run, method: str, det: Detector, given: float | None) -> tuple[float | None, str]:
    """The verdict threshold: ``--threshold``, else the one ``evaluate`` stored for this method, provided it
    was set under the scoring settings in force now (a partner weight or fusion changes every score)."""
    if given is not None:
        return float(given), "--threshold"
    f = run.file("results.json")
    if f.is_file():
        try:
            results = json.loads(f.read_text())
        except json.JSONDecodeError:
            results = {}
        stored = results.get("thresholds", {})
        if method in stored:
            then = results.get("threshold_params", {}).get(method)  # absent in results from before it was kept
            now = det.score_params()
            if then is not None and then != now:
                raise RunError(
                    f"the {method} threshold in {f} was set with {_settings(then)}, this scoring uses {_settings(now)}; "
                    f"run `hood evaluate --run {run.path} --methods {method}` with these settings, or pass --threshold")
            return float(stored[method]), f"{f} (keeps 95% of ID test)"
    return None, "none: run `hood evaluate` on this run or pass --threshold"


def _settings(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in params.items()) or "defaults"


def _load_fit(run: Run, method: str, d: Detector, fingerprint: str) -> None:
    """A feature-space detector needs the fit ``evaluate`` cached for this classifier and parameters."""
    path = run.path / "fits" / f"{method}.pt"
    hint = f"run `hood evaluate --run {run.path} --methods {method}` first"
    if not path.is_file():
        raise RunError(f"{method} needs its fit on the ID training set, which {run.path} does not hold; {hint}")
    cached = safe_load(path)
    key = cached.get("key", {})
    if key.get("classifier") != fingerprint or key.get("params") != d.params():
        raise RunError(f"the cached {method} fit in {run.path} is for another classifier or other parameters; {hint}")
    d.load_state(cached["state"])


def _heatmap_name(name: str, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", re.sub(r"\.[A-Za-z0-9]+$", "", name)).strip("._") or "image"
    out, n = stem, 1
    while out in used:
        n += 1
        out = f"{stem}_{n}"
    used.add(out)
    return out + ".png"


@dataclass
class Scorer:
    """A run's detector, ready to score uint8 image batches: what ``hood score`` and the Python API's
    :func:`hood.load_run` both use, so the two give the same scores."""

    method: str
    model: torch.nn.Module
    detector: Detector
    drawer: HeatmapDetector | None  # the heatmap detector that draws pictures, when the run has a decoder
    device: torch.device
    batch_size: int
    classes: list[str]
    threshold: float | None
    threshold_source: str

    @property
    def num_maps(self) -> int:
        return max(self.detector.num_maps, self.drawer.num_maps if self.drawer else 0)

    def features(self, images: torch.Tensor) -> FeatureSet:
        return extract_features(self.model, images, self.device, self.batch_size, self.num_maps)

    def score(self, images: torch.Tensor, feats: FeatureSet) -> np.ndarray:
        """OOD scores of ``images`` (uint8), whose features are ``feats``."""
        return self.detector.score_images(images) if self.detector.needs_images else self.detector.score(feats)


def open_scorer(cfg: Config, run: Run, method: str = "heatmap", threshold: float | None = None,
                heatmaps: bool = False, reporter: Reporter | None = None) -> Scorer:
    """The classifier, decoder, fitted detector and threshold of ``run`` for ``method``."""
    reporter = reporter or NullReporter()
    if method not in DETECTORS:
        raise ConfigError(f"unknown method '{method}'; available: {', '.join(DETECTORS)}")
    device = resolve_device(cfg.run.device)
    configure_threads(cfg.run.num_threads)
    if cfg.model.classifier is None:
        cfg.model.classifier = run.info.get("classifier")
    classifier = open_classifier(check_classifier(cfg, reporter), cfg)
    model = classifier.model.to(device)
    decoder = load_decoder(run.file("decoder.pt"), classifier)[0] if run.file("decoder.pt").is_file() else None
    if (method in NEEDS_DECODER or heatmaps) and decoder is None:
        raise RunError(f"{run.path} holds no decoder.pt; heatmaps need a train-decoder run")
    ctx = DetectorContext(classifier=model, device=device, decoder=decoder, options={"config": cfg})
    det = ctx.detector(method)
    if det.needs_fit:
        _load_fit(run, method, det, classifier.fingerprint)
    drawer = det if isinstance(det, HeatmapDetector) else (HeatmapDetector(decoder, device) if heatmaps and decoder is not None else None)
    thr, source = _threshold(run, method, det, threshold)
    classes = classifier.classes or [str(i) for i in range(classifier.num_classes)]
    return Scorer(method, model, det, drawer, device, cfg.evaluate.batch_size, classes, thr, source)


def score_images(
    cfg: Config, run: Run, paths: list[str], method: str = "heatmap", threshold: float | None = None,
    heatmaps_dir: str | None = None, reporter: Reporter | None = None,
) -> ScoreResult:
    reporter = reporter or NullReporter()
    scorer = open_scorer(cfg, run, method, threshold, heatmaps_dir is not None, reporter)
    thr, source = scorer.threshold, scorer.threshold_source
    result = ScoreResult(str(run.path), method, thr, source)
    if thr is None:
        result.notes.append(f"no threshold for {method}: verdicts are '?'; {source}")
    classes = scorer.classes
    out_dir = Path(heatmaps_dir) if heatmaps_dir else None
    used: set[str] = set()

    def flush(batch: list[tuple[ScoredImage, np.ndarray]]) -> None:
        images = hwc_to_chw(np.stack([a for _, a in batch]))
        feats = scorer.features(images)
        scores = scorer.score(images, feats)
        maps = scorer.drawer.heatmaps(feats) if (scorer.drawer is not None and out_dir is not None) else None
        for i, (item, _) in enumerate(batch):
            item.predicted_class = classes[int(feats.preds[i])]
            item.score = float(scores[i])
            item.verdict = "?" if thr is None else ("out" if item.score > thr else "in")
            if maps is not None and out_dir is not None:
                path = out_dir / _heatmap_name(item.file, used)
                img = overlay_image(images[i], maps[i])
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                atomic_write_bytes(path, buf.getvalue())
                item.heatmap = str(path)

    pending: list[tuple[ScoredImage, np.ndarray]] = []
    task = reporter.task("scoring", None)
    for name, arr, err in iter_inputs(paths, cfg.data.image_size):
        item = ScoredImage(name, error=err)
        result.images.append(item)
        if arr is not None:
            pending.append((item, arr))
        if len(pending) >= CHUNK:
            flush(pending)
            pending = []
        reporter.advance(task, 1)
    if pending:
        flush(pending)
    reporter.done(task)
    bad = len(result.images) - result.scored
    if bad:
        result.notes.append(f"{bad} of {len(result.images)} file(s) could not be read and were not scored")
    return result

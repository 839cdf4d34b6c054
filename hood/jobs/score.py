"""``hood score``: apply a trained detector to a user's own images (files, folders, archives).

Each image is decoded as the evaluation protocol does (RGB, shorter side resized, center-cropped to the
run's resolution), run through the classifier once, and scored. The verdict compares the score with
the threshold ``hood evaluate`` stored in the run's ``results.json`` (the score that keeps 95% of ID test
images) unless one is given. Files that cannot be read are reported in the result, never fatal: one
broken file in a folder of thousands should not cost the rest.
"""

from __future__ import annotations

import errno
import io
import math
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hood.config import Config
from hood.data.images import UnreadableImage, decode_image, hwc_to_chw
from hood.data.readers import (
    MAX_ARCHIVE_BYTES,
    folder_members,
    is_archive,
    iter_archive,
    read_image_file,
    safe_member_name,
)
from hood.detectors import Combination, Detector, uses_decoder
from hood.detectors.heatmap import HeatmapDetector
from hood.engine.features import FeatureSet, extract_features
from hood.engine.runtime import configure_threads, resolve_device
from hood.errors import ConfigError, HoodError, RunError
from hood.fileio import atomic_write_bytes
from hood.jobs.classes import class_names
from hood.jobs.constant import decoder_notes, scoring_notes
from hood.jobs.detectors import build_detectors, method_settings, resolve_methods
from hood.jobs.fits import fit_differs, fit_key, fit_path, load_fit
from hood.jobs.lookup import check_classifier, open_classifier, open_decoder
from hood.jobs.results import RESULTS, measured_on, read_results, rerun, threshold_differs
from hood.progress import NullReporter, Reporter
from hood.runs import Run
from hood.viz import overlay_image, with_colour_bar

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
    """``(name, HWC uint8 image or None, error or None)`` for every image under ``paths``, in order.

    One file or archive member is in memory at a time, each at most :data:`MAX_MEMBER_BYTES` and an archive at
    most :data:`MAX_ARCHIVE_BYTES` unpacked; only regular files are opened (see :func:`read_image_file`).
    A folder's files are named by their path below it, subfolders included.
    """
    for spec in paths:
        path = Path(spec).expanduser()
        try:
            info = path.stat()
        except OSError as err:
            yield spec, None, _missing(path, err)
            continue
        if stat.S_ISDIR(info.st_mode):
            try:
                members = folder_members(path, hidden=True)
            except HoodError as err:
                yield spec, None, str(err)
                continue
            if not members:
                yield spec, None, "holds no image files"
            for m in members:
                if m.skipped:
                    yield f"{spec.rstrip('/')}/{m.relpath}", None, m.skipped
                else:
                    yield from _decoded(f"{spec.rstrip('/')}/{m.relpath}", m.read, size)
        elif is_archive(path):
            yield from _archive_inputs(spec, path, size)
        else:
            yield from _decoded(spec, lambda path=path: read_image_file(path), size)


def _missing(path: Path, err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return "a symbolic link loop"
    if err.errno == errno.ENOENT and path.is_symlink():
        return "a broken symbolic link (its target does not exist)"
    if err.errno == errno.ENOENT:
        return "no such file or folder"
    return f"cannot be read ({err.strerror or err})"


def _decoded(name: str, read: Callable[[], bytes], size: int) -> Iterator[tuple[str, np.ndarray | None, str | None]]:
    try:
        data = read()
    except UnreadableImage as err:  # not a regular file, or too large: said as it is
        yield name, None, str(err)
        return
    except OSError as err:
        yield name, None, _missing(Path(name), err)
        return
    try:
        yield name, decode_image(data, size), None
    except (UnreadableImage, OSError) as err:
        yield name, None, _why(err)


def _archive_inputs(spec: str, path: Path, size: int) -> Iterator[tuple[str, np.ndarray | None, str | None]]:
    """An archive's image members, decoded as they are reached: never more than one held at a time."""
    found = False
    try:
        for member, data, why in iter_archive(path, skip_large=True, total_limit=MAX_ARCHIVE_BYTES):
            found = True
            name = f"{spec.rstrip('/')}/{safe_member_name(member) or member}"
            if data is None:
                yield name, None, why
            else:
                yield from _decoded(name, lambda data=data: data, size)
            del data
    except HoodError as err:
        yield spec, None, str(err)
        return
    if not found:
        yield spec, None, "holds no image files"


def _why(err: Exception) -> str:
    """PIL's messages name an in-memory buffer (``<_io.BytesIO object at 0x..>``); say what it means."""
    text = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(err)).strip()
    if text.startswith("cannot identify image file"):
        text = "not a recognized image format"
    return f"not a readable image ({text or type(err).__name__})"


def _threshold(run: Run, method: str, settings: dict[str, Any], fit: dict[str, Any] | None,
               given: float | None, context: dict[str, Any] | None = None) -> tuple[float | None, str]:
    """The verdict threshold: ``--threshold``, else the one ``evaluate`` stored for this method, provided it
    was set under every parameter in force now (``settings``), on the classifier, ID set and image size in
    force now (``context``) and beside the fit loaded now (``fit``)."""
    if given is not None:
        if not math.isfinite(given):
            raise ConfigError(f"--threshold must be a finite number, got {given}")
        return float(given), "--threshold"
    results = read_results(run)
    f = run.file(RESULTS)
    if results is None or method not in results["thresholds"]:
        return None, "none: run `hood evaluate` on this run or pass --threshold"
    fix = f"{rerun(run, method)} with these settings, or pass --threshold"
    if (why := threshold_differs(results, method, {**(context or {}), **settings})) is not None:
        raise RunError(f"the {method} threshold in {f} {why}; {fix}")
    if fit is not None and results["fits"].get(method) != fit:
        raise RunError(f"the {method} threshold in {f} was set with another fit than {fit_path(run, method)} "
                       f"(it was refitted since); {fix}")
    return float(results["thresholds"][method]), f"{f} (keeps 95% of ID test)"


def _load_fit(run: Run, method: str, fitted: Detector | Combination, settings: dict[str, Any], fingerprint: str,
              cfg: Config) -> dict[str, Any]:
    """A method that learned from ID data needs the fit ``evaluate`` cached for this classifier and settings."""
    hint = rerun(run, method) + " first"
    if not fit_path(run, method).is_file():
        raise RunError(f"{method} needs its fit on the ID training set, which {run.path} does not hold; {hint}")
    wanted = fit_key(method, settings, fingerprint, cfg)
    key = load_fit(run, fitted, wanted)
    if key is None and (why := fit_differs(run, wanted)) is not None:
        raise RunError(f"the cached {method} fit in {run.path} was made with {why}; {hint}")
    if key is None:
        raise RunError(f"the cached {method} fit {fit_path(run, method)} is damaged or was made for another classifier, ID "
                       f"data set, image size or parameters; {hint}")
    return key


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
    """A run's method, ready to score uint8 image batches: what ``hood score`` and the Python API's
    :func:`hood.load_run` both use, so the two give the same scores."""

    method: str
    model: torch.nn.Module
    detectors: dict[str, Detector]  # the method's own detector, or a combination's parts
    combination: Combination | None
    drawer: HeatmapDetector | None  # the heatmap detector that draws pictures, when the run has a decoder
    device: torch.device
    batch_size: int
    classes: list[str]
    threshold: float | None
    threshold_source: str

    @property
    def num_maps(self) -> int:
        return max([d.num_maps for d in self.detectors.values()] + [self.drawer.num_maps if self.drawer else 0])

    def features(self, images: torch.Tensor) -> FeatureSet:
        return extract_features(self.model, images, self.device, self.batch_size, self.num_maps)

    def score(self, images: torch.Tensor, feats: FeatureSet) -> np.ndarray:
        """OOD scores of ``images`` (uint8), whose features are ``feats``."""
        scores = {m: d.score_images(images) if d.needs_images else d.score_features(feats) for m, d in self.detectors.items()}
        return self.combination.combine(scores) if self.combination is not None else scores[self.method]


def open_scorer(cfg: Config, run: Run, method: str = "heatmap", threshold: float | None = None,
                heatmaps: bool = False, reporter: Reporter | None = None) -> Scorer:
    """The classifier, decoder, fitted detectors and threshold of ``run`` for ``method``."""
    reporter = reporter or NullReporter()
    method = resolve_methods([method])[0]
    device = resolve_device(cfg.run.device)
    configure_threads(cfg.run.num_threads)
    recorded = run.info.get("classifier")
    given = cfg.model.classifier
    if given is None or (not Path(given).is_absolute() and not Path(given).exists() and isinstance(recorded, str)):
        cfg.model.classifier = recorded  # the path the run recorded is absolute: a run opens from any directory
    classifier = open_classifier(check_classifier(cfg, reporter), cfg)
    model = classifier.model.to(device)
    drawing = uses_decoder([method]) or heatmaps
    if drawing and not run.file("decoder.pt").is_file():
        raise RunError(f"{run.path} holds no decoder.pt; heatmaps need a train-decoder run")
    decoder = open_decoder(run, classifier, cfg.data.image_size)[0] if drawing else None  # its heatmaps' size checked
    detectors, combos = build_detectors([method], model, cfg, device, decoder)
    fits = {m: _load_fit(run, m, d, d.settings(), classifier.fingerprint, cfg) for m, d in detectors.items() if d.needs_fit}
    combination = combos.get(method)
    if combination is not None:
        fit_settings = {"parts": {p: detectors[p].settings() for p in combination.parts}}
        stored = _load_fit(run, method, combination, fit_settings, classifier.fingerprint, cfg)
        fits[method] = stored
    drawer = detectors.get("heatmap") if isinstance(detectors.get("heatmap"), HeatmapDetector) else None
    if drawer is None and heatmaps and decoder is not None:
        drawer = HeatmapDetector(model, decoder, device=device)
    thr, source = _threshold(run, method, method_settings(method, detectors, combos), fits.get(method), threshold,
                             measured_on(classifier.fingerprint, cfg.data.id, cfg.data.image_size))
    classes = class_names(classifier.classes, classifier.num_classes, run)
    return Scorer(method, model, detectors, combination, drawer, device, cfg.evaluate.batch_size, classes, thr, source)


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
        maps = scorer.drawer.heatmaps_of(feats) if (scorer.drawer is not None and out_dir is not None) else None
        for i, (item, _) in enumerate(batch):
            item.predicted_class = classes[int(feats.preds[i])]
            item.score = float(scores[i])
            item.verdict = "?" if thr is None else ("out" if item.score > thr else "in")
            if maps is not None and out_dir is not None:
                path = out_dir / _heatmap_name(re.split(r"[\\/]", item.file)[-1], used)  # the file's own name
                img = with_colour_bar(overlay_image(images[i], maps[i]))  # the decoder's range, [0, 1]
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                atomic_write_bytes(path, buf.getvalue(), "--heatmaps folder")
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
    try:
        results = read_results(run)
    except RunError:
        results = None  # a damaged results.json was refused by the threshold already, or --threshold bypassed it
    result.notes += scoring_notes(results, scorer.method, [i.score for i in result.images if i.score is not None])
    result.notes += decoder_notes(run.info, [scorer.method])
    bad = len(result.images) - result.scored
    if bad:
        result.notes.append(f"{bad} of {len(result.images)} file(s) could not be read and were not scored")
    return result

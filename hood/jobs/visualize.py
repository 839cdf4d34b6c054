"""``hood visualize``: heatmap grids for the ID test set and each OOD set of a trained decoder, plus
score histograms and ROC curves.

The histograms and ROC curves read the per-sample scores ``hood evaluate`` saved
(``scores/<method>/<set>.npz``), so they show exactly what the table measured and cost no GPU; when the
run was never evaluated, they fall back to the heatmap scores of the images drawn here (``data.ood_count``
images of each set, 2,000 when unset, drawn by ``data.ood_draw`` as evaluate draws them) and say so. The grids
pick their images from those same saved scores, so only the images drawn go through the classifier and the
decoder (evaluated or not, a set whose heatmaps all score the same is said in a note).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hood.config import Config
from hood.data.draw import draw
from hood.data.images import ImageSet
from hood.data.sources import dataset_label, load_id_splits, load_image_set
from hood.detectors.heatmap import HeatmapDetector
from hood.engine.features import extract_features
from hood.engine.runtime import configure_threads, resolve_device
from hood.errors import ConfigError, RunError
from hood.fileio import atomic_write_bytes
from hood.jobs.constant import constant_note, decoder_notes, is_constant
from hood.jobs.lookup import (
    check_given_files,
    check_set_names,
    data_root,
    decoder_run,
    open_classifier,
    open_decoder,
    preflight,
    run_classifier,
)
from hood.jobs.results import load_rows, load_scores, measured_on, read_results, recorded_decoders, rerun, threshold_differs
from hood.progress import NullReporter, Reporter
from hood.runs import Run
from hood.viz import heatmap_grid, roc_curves, score_histograms

PICKS = ("top", "bottom", "random")


@dataclass
class Figures:
    """What was written, in order (grids, then histograms and ROC), with a note per fallback."""

    paths: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __iter__(self):  # noqa: ANN204 - lets callers treat Figures as the list of paths
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


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
    reporter: Reporter | None = None, method: str = "heatmap",
) -> Figures:
    reporter = reporter or NullReporter()
    if how not in PICKS:
        raise ConfigError(f"--pick must be top, bottom or random, got '{how}'")
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    device = resolve_device(cfg.run.device)
    configure_threads(cfg.run.num_threads)
    check_given_files(cfg, reporter)  # a named --classifier is checked before runs or data are looked up
    check_set_names(cfg, required=False)  # a set named like another, or `id`, would overwrite its figures
    preflight(cfg, [cfg.data.id, *cfg.data.ood])  # every missing set named at once
    run = decoder_run(run_path, cfg, reporter)
    results = read_results(run) or {}  # before any work: an unfinished or damaged evaluation is refused by name
    clf_path = run_classifier(cfg, run, reporter)
    root, size = data_root(cfg), cfg.data.image_size
    splits = load_id_splits(cfg.data.id, root, size, cfg.data.strict)
    classifier = open_classifier(clf_path, cfg, num_classes=len(splits["train"].classes or []))
    decoder, _ = open_decoder(run, classifier, size)  # its heatmaps are laid over images of data.image_size
    det = HeatmapDetector(classifier.model, decoder, device=device)
    stale = _stale(results, measured_on(classifier.fingerprint, cfg.data.id, size), det.settings()["decoder"])
    if method in stale:  # before any figure: its histogram would show another decoder's (or data set's) scores
        raise RunError(f"the {method} scores saved in {run.path} were measured otherwise than now: the threshold {stale[method]}; "
                       f"{rerun(run, method)}")
    model = classifier.model.to(device)
    folder = Path(out_dir) if out_dir else run.path / "figures"
    figs = Figures()
    grid_scores: dict[str, np.ndarray] = {}
    path, grid_scores["id"] = _grid(det, model, device, "id", splits["test"], n, how, cfg, folder, reporter,
                                    _saved(run, results, stale, "id", len(splits["test"])))
    figs.paths.append(path)
    del splits
    names = []
    for spec in cfg.data.ood:  # one set in memory at a time
        name = dataset_label(spec)
        names.append(name)
        s = load_image_set(spec, root, size, cfg.data.strict)
        path, grid_scores[name] = _grid(det, model, device, name, s, n, how, cfg, folder, reporter,
                                        _saved(run, results, stale, name, len(s)))
        figs.paths.append(path)
    if flat := [s for s, v in grid_scores.items() if is_constant(v)]:
        figs.notes.append(constant_note("heatmap", flat, float(grid_scores[flat[0]][0])))
    figs.notes += decoder_notes(run.info, ["heatmap"])
    if stale:
        figs.notes.append(f"the ROC curves leave out {', '.join(stale)}: their saved scores were measured on another decoder, "
                          f"classifier, ID set or image size; {rerun(run)}")
    _score_figures(run, results, method, names, grid_scores, folder, figs, set(stale))
    return figs


def _stale(results: dict, context: dict, decoder: str) -> dict[str, str]:
    """The evaluated methods whose saved scores were measured on another classifier, ID set, image size or
    decoder than this visualization's, with how."""
    out = {}
    for m in results.get("thresholds", {}):
        why = threshold_differs(results, m, {**context, **dict.fromkeys(recorded_decoders(results, m), decoder)}, only=True)
        if why is not None:
            out[m] = why
    return out


def _score_figures(run: Run, results: dict, method: str, names: list[str], grid_scores: dict[str, np.ndarray],
                   folder: Path, figs: Figures, stale: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Histograms of ``method`` and ROC curves of every evaluated method, from the saved scores."""
    convention = results.get("fpr_convention", "id")
    table = results.get("results", {})

    def count(m: str, s: str) -> int | None:  # what results.json says the file holds
        n = results.get("n_id") if s == "id" else (table.get(m, {}).get(s) or {}).get("n")
        return n if isinstance(n, int) else None

    def scores(m: str, s: str) -> np.ndarray | None:
        return load_scores(run, m, s, count(m, s))

    evaluated = [m for m in results.get("methods", list(table)) if m not in stale and scores(m, "id") is not None]
    if not names:
        return
    if method not in evaluated and method != "heatmap":
        raise ConfigError(f"no saved scores of '{method}' in {run.path}; run `hood evaluate --run {run.path} --methods {method}` first")
    saved = {m: {s: scores(m, s) for s in ["id", *names]} for m in evaluated}
    saved = {m: v for m, v in saved.items() if all(x is not None for x in v.values())}
    if method not in saved:
        figs.notes.append(f"{run.path} holds no saved scores for every set; histograms and ROC use the heatmap "
                          f"scores of the images drawn here (run `hood evaluate` for the full sets)")
        saved = {"heatmap": grid_scores}
        method = "heatmap"
    hist = score_histograms(saved[method]["id"], {s: saved[method][s] for s in names}, method, convention)
    roc = roc_curves({m: v["id"] for m, v in saved.items()}, {s: {m: v[s] for m, v in saved.items()} for s in names}, convention)
    for fname, data in ((f"histograms_{method}.png", hist), ("roc.png", roc)):
        atomic_write_bytes(folder / fname, data)
        figs.paths.append(folder / fname)


def _saved(run: Run, results: dict, stale: dict[str, str], set_name: str, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The heatmap scores evaluate saved for ``set_name`` and the rows of the set they are of, when they were
    measured as now: the grid picks among them without scoring the set again."""
    if "heatmap" in stale or "heatmap" not in results.get("thresholds", {}):
        return None
    try:
        scores = load_scores(run, "heatmap", set_name)
    except RunError:
        return None  # damaged: the set is scored here instead
    rows = load_rows(run, "heatmap", set_name)
    if scores is None or rows is None or len(rows) != len(scores) or (len(rows) and int(rows.max()) >= size):
        return None
    return scores, rows


def _grid(det: HeatmapDetector, model: torch.nn.Module, device: torch.device, name: str, s: ImageSet,
          n: int, how: str, cfg: Config, folder: Path, reporter: Reporter,
          saved: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[Path, np.ndarray]:
    """The grid of ``n`` images of ``s`` picked by their heatmap scores: evaluate's (``saved``), else those of a
    draw scored here; only the picked images are drawn. Returns the scores picked from."""
    if saved is not None:
        scores, rows = saved
    else:
        s, _ = draw(s, cfg.data.ood_count or 2000, cfg.data.ood_draw, cfg.data.ood_draw_seed)
        scores = det.score_features(extract_features(model, s.images, device, cfg.evaluate.batch_size, det.num_maps,
                                                     reporter=reporter, description=f"{name} heatmaps"))
        rows = np.arange(len(s))
    idx = pick(scores, n, how, cfg.run.seed)
    images = s.images[torch.as_tensor(rows[idx])]
    feats = extract_features(model, images, device, cfg.evaluate.batch_size, det.num_maps)
    h = det.heatmaps_of(feats)
    img = heatmap_grid(images, h, det.score_features(feats), f"{name}: input / heatmap / overlay, score below ({how})")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    path = folder / f"heatmaps_{name}.png"
    atomic_write_bytes(path, buf.getvalue())
    return path, scores

"""A finished command-line run as a detector in Python: ``hood.load_run(path)``.

It scores through :func:`hood.jobs.score.open_scorer`, the code behind ``hood score``, so a notebook and the
command line give the same scores for the same images, and it keeps the threshold ``hood evaluate`` stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from hood.config import resolve
from hood.data.inputs import batches
from hood.detectors.base import device_of, plain_errors
from hood.jobs.lookup import incomplete
from hood.jobs.recommended import default_method
from hood.jobs.score import Scorer, open_scorer
from hood.runs import open_run


class LoadedRun:
    """A run's classifier, decoder and fitted detector; ``method`` picks the detector (``heatmap`` by default)."""

    def __init__(self, scorer: Scorer, path: Path, image_size: int) -> None:
        self._scorer, self.path, self.image_size = scorer, path, image_size

    @property
    def method(self) -> str:
        return self._scorer.method

    @property
    def threshold(self) -> float | None:
        """The OOD score above which an image is called OOD (keeps 95% of the ID test images), or None."""
        return self._scorer.threshold

    @property
    def classes(self) -> list[str]:
        return list(self._scorer.classes)

    def _batches(self, images: Any) -> Any:
        for b in batches(images, self._scorer.batch_size, size=self.image_size):  # files: resized as hood score does
            if b.shape[-1] != self.image_size:
                raise ValueError(f"the run works on {self.image_size}x{self.image_size} images; resize them to that size (got {b.shape[-1]})")
            yield b

    @plain_errors
    def score(self, images: Any) -> np.ndarray:
        """OOD scores (larger = more OOD) of uint8 or [0, 1] float images, a tensor, an array or a DataLoader, or
        of PIL images or image files (the shorter side resized to the run's size and centre-cropped, as ``hood
        score`` reads them)."""
        out = [self._scorer.score(b, self._scorer.features(b)) for b in self._batches(images)]
        if not out:
            raise ValueError("no images to score")
        return np.concatenate([np.asarray(o) for o in out])

    @plain_errors
    def predict_class(self, images: Any) -> list[str]:
        """The classifier's predicted class name per image."""
        return [self._scorer.classes[int(i)] for b in self._batches(images) for i in self._scorer.features(b).preds]

    @plain_errors
    def heatmaps(self, images: Any) -> torch.Tensor:
        """``N x 3 x H x W`` heatmaps in [-1, 1] (CPU) of the run's decoder."""
        drawer = self._scorer.drawer
        if drawer is None:
            raise ValueError(f"{self.path} holds no decoder; heatmaps need a train-decoder run")
        out = [drawer.heatmaps_of(self._scorer.features(b)) for b in self._batches(images)]
        if not out:
            raise ValueError("no images to draw heatmaps of")
        return torch.cat(out)

    def is_ood(self, images: Any, threshold: float | None = None) -> np.ndarray:
        """True per image whose score is above ``threshold`` (default: the run's stored one)."""
        thr = self.threshold if threshold is None else _finite(threshold)
        if thr is None:
            raise ValueError(f"{self.path} stores no threshold for {self.method}; evaluate the run first or pass threshold=")
        return self.score(images) > thr


def _finite(threshold: Any) -> float:
    """A threshold the caller gave: NaN would call every image ID (no score is above it), so it is refused."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise TypeError(f"threshold must be a number, got {threshold!r}")
    if not np.isfinite(float(threshold)):
        raise ValueError(f"threshold must be a finite number, got {threshold}")
    return float(threshold)


@plain_errors
def load_run(path: str | Path, method: str | None = None, threshold: float | None = None,
             device: str | torch.device = "auto") -> LoadedRun:
    """A finished ``train-decoder`` run (optionally evaluated) or ``evaluate`` run, ready to score images.

    ``method``: the detector to use; by default the one ``hood score`` uses, the recommended method evaluated on
    the run (:func:`hood.jobs.recommended.default_method`); a baseline needs the fit ``evaluate`` cached in the run.
    """
    if threshold is not None:
        threshold = _finite(threshold)  # said as the API names it, not as the --threshold of hood score
    run = open_run(path)
    if run.info.get("command") not in ("train-decoder", "evaluate"):
        raise ValueError(f"{path} is a {run.info.get('command')} run; load a train-decoder or evaluate run")
    if run.info.get("status") != "complete":  # a resume in progress replaces decoder.pt under the reader
        raise ValueError(incomplete(run, path))
    if method is None:
        method = default_method(run)[0]
    dev = device_of(device)
    cfg = resolve(str(run.file("config.yaml")), {"run.device": str(dev)})
    scorer = open_scorer(cfg, run, method, threshold, heatmaps=run.file("decoder.pt").is_file())
    return LoadedRun(scorer, run.path, cfg.data.image_size)


"""``heatmap+vim`` and ``heatmap+vim+scale``: the paper's heatmap score plus post-hoc scores, each standardized
on ID data, in a weighted sum. Arithmetic on score arrays: ``evaluate`` computes each part's scores once (the
methods of those names read the same arrays) and combines them here.

Why combine: they look at different things. The heatmap reads the classifier's features through a decoder
trained on outliers; ViM reads the part of the feature that the classifier's weights ignore; SCALE reads the
logits' energy, sharpened by how peaked the activations are, which is what sets textures apart when a short
decoder training leaves the heatmap weak there. A sum of such scores, each on the scale of its own ID spread,
ranks OOD images better than any of them alone (docs/quality.md). Each combination is a method of its own,
not a change to ``heatmap``: the paper's score stays as published.

Standardization: ``z_i(x) = (s_i(x) - mu_i) / sigma_i`` with ``mu_i, sigma_i`` taken over ID images *the
decoder was not trained on* (``evaluate``: at most :data:`FIT_ROWS` seeded rows of the ID training set, see
:func:`fit_rows`); the score is ``z_heatmap + sum_p w_p * z_p``, the weights chosen on validation data. The
means only shift every score alike; the spreads set the relative weights.
Why held out: the decoder fits its own training images closely, so their heatmap spread is too narrow and
would inflate ``z_heatmap`` until the partners no longer count. ViM learns from ID data, so it fits on the
whole ID training set first, as it does alone.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from hood.data.inputs import batches, collect
from hood.detectors.base import Detector, as_number, plain_errors
from hood.detectors.heatmap import HeatmapDetector
from hood.detectors.scale import SCALE
from hood.detectors.vim import ViM
from hood.engine.features import FeatureSet
from hood.engine.runtime import seeded_indices
from hood.errors import DetectorParameterError

FIT_ROWS = 10_000  # enough for a mean and a spread; bounds the decoder pass over the ID training set
MIN_UNSEEN = 100  # fewer unseen rows than this (a decoder trained on nearly all): every row, biased but usable


def fit_rows(n_train: int, decoder_rows: torch.Tensor | None, seed: int) -> torch.Tensor:
    """The ID training rows a combination standardizes on: at most :data:`FIT_ROWS`, seeded, of those the
    decoder did not train on (``decoder_rows``)."""
    rows = torch.arange(n_train)
    if decoder_rows is not None:
        unseen = torch.ones(n_train, dtype=torch.bool)
        unseen[decoder_rows[decoder_rows < n_train]] = False
        if int(unseen.sum()) >= MIN_UNSEEN:
            rows = rows[unseen]
    return rows[seeded_indices(len(rows), FIT_ROWS, seed)]


class Combination:
    """The heatmap's z-score plus its partners', each weighted by its ``<partner>_weight``.

    Built with nothing but weights it is the arithmetic ``evaluate`` needs (:meth:`fit_scores`, :meth:`combine`);
    given a fitted :class:`HeatmapDetector` it also scores images (:meth:`fit`, :meth:`predict`), with partners
    built on the heatmap's model unless given.
    """

    name: ClassVar[str] = ""
    parts: ClassVar[tuple[str, ...]] = ()  # the heatmap, then its partners

    def __init__(self, heatmap: HeatmapDetector | None, partners: dict[str, Detector | None], weights: dict[str, Any]) -> None:
        if heatmap is not None and not isinstance(heatmap, HeatmapDetector):
            raise TypeError(f"{type(self).__name__} combines a hood.HeatmapDetector with post-hoc scores, got a {type(heatmap).__name__}")
        self.weights: dict[str, float] = {}
        for part, w in weights.items():
            value = as_number(self.name, f"{part}_weight", w)
            if not 0 <= value <= 100:
                raise DetectorParameterError(self.name, f"{part}_weight", f"must be in [0, 100], got {w}")
            self.weights[part] = value
        self.heatmap = heatmap
        self._given = partners
        self._partners: dict[str, Detector] | None = None
        self.mean: torch.Tensor | None = None  # per part, in the order of ``parts``
        self.std: torch.Tensor | None = None

    @classmethod
    def keywords(cls) -> dict[str, Any]:
        """The combination's own parameters (its weights) with their defaults; its parts have theirs."""
        own = inspect.signature(cls.__init__).parameters
        return {n: p.default for n, p in own.items() if p.kind is p.KEYWORD_ONLY and n.endswith("_weight")}

    def settings(self) -> dict[str, Any]:
        return {f"{p}_weight": w for p, w in self.weights.items()}

    # --- arithmetic on score arrays -------------------------------------------------------------------------

    def _stack(self, scores: Mapping[str, np.ndarray]) -> torch.Tensor:
        return torch.stack([torch.as_tensor(np.asarray(scores[p]), dtype=torch.float64) for p in self.parts], dim=1)

    def fit_scores(self, scores: Mapping[str, np.ndarray]) -> None:
        """Each part's ID mean and spread, from its scores of ID images the decoder did not train on."""
        s = self._stack(scores)
        self.mean = s.mean(0)
        # a part constant on ID data (a degenerate decoder) must not divide by zero: unit spread
        std = s.std(0) if len(s) > 1 else torch.ones(s.shape[1], dtype=torch.float64)
        self.std = torch.where(std > 0, std, torch.ones_like(std))

    def combine(self, scores: Mapping[str, np.ndarray]) -> np.ndarray:
        """``z_heatmap + sum_p w_p z_p`` of the parts' scores of the same images."""
        if self.mean is None or self.std is None:
            raise ValueError(f"{self.name} is not fitted")
        z = ((self._stack(scores) - self.mean) / self.std).numpy()
        return z @ np.array([1.0, *(self.weights[p] for p in self.parts[1:])])

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std = state["mean"].double(), state["std"].double()

    # --- images, through a fitted heatmap detector ----------------------------------------------------------

    def partners(self) -> dict[str, Detector]:
        """The partner detectors: those given, else built on the heatmap's model with their defaults."""
        if self._partners is None:
            hm = self._heatmap()
            built = {"vim": ViM, "scale": SCALE}
            self._partners = {p: d if d is not None else built[p](hm.adapter.final_layer(), device=hm.device)
                              for p, d in self._given.items()}
        return self._partners

    def _heatmap(self) -> HeatmapDetector:
        if self.heatmap is None or self.heatmap.decoder is None:
            raise ValueError(f"fit the HeatmapDetector first (or load it): {type(self).__name__} combines its scores")
        return self.heatmap

    def _scores(self, feats: FeatureSet) -> dict[str, np.ndarray]:
        return {"heatmap": self._heatmap().score_features(feats), **{p: d.score_features(feats) for p, d in self.partners().items()}}

    @plain_errors
    def fit(self, id_data: Any) -> Combination:
        """Fit the partners on ID images the decoder was *not* trained on (e.g. a held-out part of the training
        set), and measure every part's ID mean and spread on them."""
        hm = self._heatmap()
        feats = hm.features(collect(id_data, "ID data"))
        for d in self.partners().values():
            if d.needs_fit:
                d.fit_features(feats)
        self.fit_scores(self._scores(feats))
        return self

    @plain_errors
    def predict(self, x: Any) -> np.ndarray:
        """OOD scores (larger = more OOD) of the images of ``x``."""
        if self.mean is None:
            raise ValueError(f"{type(self).__name__} is not fitted: call fit(id_data) with ID images the decoder was not trained on")
        out = [self.combine(self._scores(self._heatmap().features(b))) for b in batches(x, self._heatmap().batch_size)]
        if not out:
            raise ValueError("no images to score")
        return np.concatenate(out)


class HeatmapViM(Combination):
    """``heatmap+vim``: the heatmap's z-score plus ViM's weighted ``vim_weight``; ``vim``, a ViM of your own
    (default: ViM with its defaults, on the heatmap's model)."""

    name = "heatmap+vim"
    parts = ("heatmap", "vim")

    def __init__(self, heatmap: HeatmapDetector | None = None, *, vim_weight: float = 1.0, vim: ViM | None = None) -> None:
        super().__init__(heatmap, {"vim": vim}, {"vim": vim_weight})


class HeatmapViMScale(Combination):
    """``heatmap+vim+scale``, the recommended detector: :class:`HeatmapViM` plus SCALE's z-score weighted
    ``scale_weight`` (``scale``: a SCALE of your own, e.g. at the percentile your validation chose)."""

    name = "heatmap+vim+scale"
    parts = ("heatmap", "vim", "scale")

    def __init__(self, heatmap: HeatmapDetector | None = None, *, vim_weight: float = 1.0, scale_weight: float = 1.0,
                 vim: ViM | None = None, scale: SCALE | None = None) -> None:
        super().__init__(heatmap, {"vim": vim, "scale": scale}, {"vim": vim_weight, "scale": scale_weight})


COMBINATIONS: dict[str, type[Combination]] = {c.name: c for c in (HeatmapViM, HeatmapViMScale)}

"""``heatmap+vim`` and ``heatmap+vim+scale``: the paper's heatmap score plus post-hoc scores, each
standardized on ID data, in a weighted sum.

Why combine: they look at different things. The heatmap reads the classifier's features through a
decoder trained on outliers; ViM reads the part of the feature that the classifier's weights ignore; SCALE
reads the logits' energy, sharpened by how peaked the activations are, which is what sets textures apart
when a short decoder training leaves the heatmap weak there. A sum of such scores, each on the scale of its
own ID spread, ranks OOD images better than any of them alone (docs/quality.md). Each combination is a
method of its own, not a change to ``heatmap``: the paper's score stays as published.

Standardization: ``z_i(x) = (s_i(x) - mu_i) / sigma_i`` with ``mu_i, sigma_i`` taken over (at most
``_FIT_ROWS``, seeded) ID training images *the decoder was not trained on*; the score is
``z_heatmap + sum_p w_p * z_p`` with ``w_vim = evaluate.vim_weight`` and ``w_scale =
evaluate.scale_weight``, settings chosen on validation data. The means only shift every score alike; the
spreads set the relative weights.
Why held out: the decoder fits its own training images closely, so their heatmap spread is too narrow
and would inflate ``z_heatmap`` until the partners no longer count. ViM learns from ID data, so it fits
on the whole ID training set first, as it does alone. The fit depends on the decoder, so its fingerprint
is part of the parameters: a retrained decoder is refitted, never served a stale fit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from hood.detectors.base import Detector, DetectorContext, register
from hood.detectors.heatmap import HeatmapDetector
from hood.detectors.memo import ScoreMemo
from hood.engine.features import FeatureSet
from hood.engine.runtime import seeded_indices

_FIT_ROWS = 10_000  # enough for a mean and a spread; bounds the decoder pass over the ID training set
# each combination's partners, and the evaluate key that weighs each partner's z-score
COMBINATIONS: dict[str, tuple[str, ...]] = {"heatmap+vim": ("vim",), "heatmap+vim+scale": ("vim", "scale")}
WEIGHT_KEYS = {"vim": "vim_weight", "scale": "scale_weight"}


def decoder_fingerprint(decoder: torch.nn.Module) -> str:
    """A short hash of the decoder's weights and buffers: what a cached fit on its scores depends on."""
    h = hashlib.sha256()
    for name, t in sorted(decoder.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class CombinedDetector(Detector):
    """The heatmap joined with partner detectors, each partner's z-score weighted by ``weights[name]``."""

    needs_fit = True

    def __init__(self, heatmap: HeatmapDetector, partners: dict[str, Detector], weights: dict[str, float] | None = None,
                 seed: int = 0, decoder_rows: torch.Tensor | None = None, memo: ScoreMemo | None = None) -> None:
        self.name = "+".join(["heatmap", *partners])  # type: ignore[misc]  # named after its partners
        self.heatmap, self.partners = heatmap, dict(partners)
        self.num_maps = max([heatmap.num_maps] + [p.num_maps for p in partners.values()])
        self.seed = seed
        self.decoder_rows = decoder_rows  # ID training rows the decoder saw: kept out of the statistics
        # used when scoring only: the fit (means, spreads) does not depend on them; a missing weight is 1
        self.weights = {p: float((weights or {}).get(p, 1.0)) for p in partners}
        self.fingerprint = decoder_fingerprint(heatmap.decoder)
        self.mean: torch.Tensor | None = None  # (heatmap, *partners)
        self.std: torch.Tensor | None = None
        # the context's memo when the heatmap and partners are shared with other methods (evaluate): their
        # scores of the same rows are computed once, here or by the methods of their names
        self.memo = memo or ScoreMemo()

    def params(self) -> dict[str, Any]:
        # the rows held out follow from the decoder (its metadata), which the fingerprint already names; the
        # statistics are of the partners' scores, so all their settings, scoring ones included (SCALE's
        # percentile), are fit parameters here: a fit made under another percentile has a stale spread
        partners = {n: p.settings() for n, p in self.partners.items()}
        return {"decoder": self.fingerprint, "partners": partners, "fit_rows": _FIT_ROWS, "seed": self.seed, "held_out": 1}

    def score_params(self) -> dict[str, Any]:
        return {WEIGHT_KEYS[p]: w for p, w in self.weights.items()}

    def _components(self, feats: FeatureSet) -> torch.Tensor:
        """N x (1 + partners) float64: the heatmap score, then each partner's, all larger = more OOD."""
        scores = [self.memo.score(d, feats, d.score) for d in (self.heatmap, *self.partners.values())]
        return torch.stack([torch.tensor(s, dtype=torch.float64) for s in scores], dim=1)

    def map_rows(self, n_train: int) -> torch.Tensor:
        """The fit rows: at most ``_FIT_ROWS`` seeded ID training rows the decoder was not trained on."""
        rows = torch.arange(n_train)
        if self.decoder_rows is not None:
            unseen = torch.ones(n_train, dtype=torch.bool)
            unseen[self.decoder_rows[self.decoder_rows < n_train]] = False
            if int(unseen.sum()) >= 100:  # a decoder trained on (nearly) all of them: all rows, biased but usable
                rows = rows[unseen]
        return rows[seeded_indices(len(rows), _FIT_ROWS, self.seed)]

    def fit(self, id_train: FeatureSet) -> None:
        for p in self.partners.values():
            if p.needs_fit:
                p.fit(id_train)
        s = self._components(id_train.take(self.map_rows(len(id_train))))
        self.mean = s.mean(0)
        # a component constant on ID data (degenerate decoder) must not divide by zero: unit spread
        std = s.std(0) if len(s) > 1 else torch.ones(s.shape[1], dtype=torch.float64)
        self.std = torch.where(std > 0, std, torch.ones_like(std))

    def score(self, feats: FeatureSet) -> np.ndarray:
        if self.mean is None or self.std is None:
            raise RuntimeError(f"{self.name} is not fitted")
        z = ((self._components(feats) - self.mean) / self.std).numpy()
        w = np.array([1.0, *self.weights.values()])
        return z @ w

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "partners": {n: p.state() for n, p in self.partners.items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std = state["mean"].double(), state["std"].double()
        for n, p in self.partners.items():
            p.load_state(state["partners"][n])


def _builder(name: str, partners: tuple[str, ...]) -> Callable[[DetectorContext], Detector]:
    """The registry factory of the combination ``name`` of the heatmap with ``partners``."""

    def build(ctx: DetectorContext) -> Detector:
        if ctx.decoder is None:
            raise ValueError(f"{name} needs a trained decoder")
        cfg = ctx.options.get("config")
        seed = int(getattr(getattr(cfg, "run", None), "seed", 0) or 0)
        heatmap = ctx.detector("heatmap")
        if not isinstance(heatmap, HeatmapDetector):
            raise TypeError(f"{name} reads the heatmap detector's decoder; 'heatmap' is registered as {type(heatmap).__name__}")
        weights = {p: float(ctx.param(WEIGHT_KEYS[p])) for p in partners}
        # the context's instances: shared with the methods of the same names, fitted and scored once
        return CombinedDetector(heatmap, {p: ctx.detector(p) for p in partners}, weights, seed,
                                ctx.options.get("decoder_rows"), ctx.memo)
    return build


for _name, _partners in COMBINATIONS.items():
    register(_name, needs_decoder=True)(_builder(_name, _partners))

"""``heatmap+energy``, ``heatmap+knn``, ``heatmap+vim``, ``heatmap+mahalanobis``, ``heatmap+vim+mahalanobis``:
the paper's heatmap score plus one or two baselines', each standardized on ID data, summed.

Why combinations: they look at different things. The heatmap reads the classifier's features through a
decoder trained on outliers; energy reads the logits, KNN the feature geometry, ViM the part of the
feature that the classifier's weights ignore. A short decoder training leaves the heatmap weak where the
others are already telling, so a sum of two, each on the scale of its own ID spread, can rank OOD images
better than either (issue 7's validation runs). Each is a method of its own, not a change to
``heatmap``: the paper's score stays as published.

Standardization: ``z_i(x) = (s_i(x) - mu_i) / sigma_i`` with ``mu_i, sigma_i`` taken over (at most
``_FIT_ROWS``, seeded) ID training images *the decoder was not trained on*; the score is
``z_heatmap + lambda * z_partner`` with ``lambda = evaluate.partner_weight`` (1, the plain sum, by default;
a setting to choose on validation data, see the README); with two partners each counts ``lambda`` times.
The mean only shifts every score alike; the spreads set the relative weight.
``evaluate.fusion: tail`` joins them through their ID tail probabilities instead (Fisher's method):
``-log P_ID(heatmap >= h) - lambda log P_ID(partner >= p)``, each P empirical over the same fit rows up to
their ``1 - evaluate.tail_fraction`` quantile and exponential above it (fitted to the excesses), so scores
beyond every fit row still rank. Why offer it: the heatmap's ID scores are far from Gaussian (a floor and a
long upper tail), so a spread is a poor scale for the tail that sets FPR95, and the weight that repairs
that has to be chosen on validation data; the tail rule needs none (``bench/QUALITY.md``, "Tail
probabilities instead of a weighted z-sum").
Why a second partner: ViM and Mahalanobis fail on different far-OOD images (on ResNet18, ViM accepts a
quarter of MNIST, Mahalanobis none of the uniform noise), and the heatmap fails on both kinds; Mahalanobis
alone is near chance on near-OOD photographs, so it costs there what it gains far out
(``bench/QUALITY.md``, "A second partner: Mahalanobis").
Why held out: the decoder fits its own training images closely, so their heatmap spread is too narrow
and would inflate ``z_heatmap`` until the partner no longer counts (measured on a 60-epoch decoder:
standardized on all training images, a max of the two z-scores was the heatmap alone). A partner that learns from ID data (KNN, ViM)
fits on the whole ID training set first, as it does alone. The fit depends on the decoder, so its
fingerprint is part of the parameters: a retrained decoder is refitted, never served a stale fit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from hood.detectors.base import Detector, DetectorContext, register
from hood.detectors.heatmap import HeatmapDetector
from hood.detectors.memo import ScoreMemo
from hood.engine.features import FeatureSet
from hood.engine.runtime import seeded_indices

_FIT_ROWS = 10_000  # enough for a mean and a spread; bounds the decoder pass over the ID training set
PARTNERS = ("energy", "knn", "vim", "mahalanobis")  # baselines that score features (ODIN needs images and gradients)
TRIOS = (("vim", "mahalanobis"),)  # two partners: the subspace residual and the class-conditional distance


def combined_name(partners: Iterable[str]) -> str:
    """The method name of the heatmap joined with ``partners``: ``heatmap+vim``, ``heatmap+vim+mahalanobis``."""
    return "+".join(("heatmap", *partners))


def tail_nlp(fit: np.ndarray, s: np.ndarray, tail: float) -> np.ndarray:
    """-log P(ID score >= s) from the ID fit scores ``fit``: their empirical tail share (add-one smoothed) up
    to their ``1 - tail`` quantile q; above it ``tail * exp(-(s - q) / beta)``, beta the fit's mean excess
    over q (a peaks-over-threshold tail), so that the score keeps growing past the largest fit score."""
    fit = np.sort(np.asarray(fit, dtype=np.float64))
    s = np.asarray(s, dtype=np.float64)
    q = float(np.quantile(fit, 1 - tail))
    excess = fit[fit > q] - q
    beta = max(float(excess.mean()) if len(excess) else 0.0, 1e-12)
    empirical = (len(fit) - np.searchsorted(fit, s, side="left") + 1) / (len(fit) + 1)
    return -np.log(np.where(s > q, tail * np.exp(-(s - q) / beta), empirical))


def decoder_fingerprint(decoder: torch.nn.Module) -> str:
    """A short hash of the decoder's weights and buffers: what a cached fit on its scores depends on."""
    h = hashlib.sha256()
    for name, t in sorted(decoder.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class CombinedDetector(Detector):
    needs_fit = True

    def __init__(self, heatmap: HeatmapDetector, partners: dict[str, Detector], seed: int = 0,
                 decoder_rows: torch.Tensor | None = None, partner_weight: float = 1.0, fusion: str = "zscore",
                 tail_fraction: float = 0.2, memo: ScoreMemo | None = None) -> None:
        self.name = combined_name(partners)  # type: ignore[misc]  # one class, several registered names
        self.heatmap, self.partners = heatmap, dict(partners)
        self.num_maps = max(heatmap.num_maps, *(p.num_maps for p in self.partners.values()))
        self.seed = seed
        self.decoder_rows = decoder_rows  # ID training rows the decoder saw: kept out of the statistics
        self.partner_weight = partner_weight  # used when scoring only: the fit (means, spreads) does not depend on it
        self.fusion, self.tail_fraction = fusion, tail_fraction  # scoring only, likewise
        self.fingerprint = decoder_fingerprint(heatmap.decoder)
        self.mean: torch.Tensor | None = None  # (heatmap, *partners)
        self.std: torch.Tensor | None = None
        self.fit_scores: torch.Tensor | None = None  # the fit rows' scores, for the tail fusion
        # the context's memo when the heatmap and partners are shared with other methods (evaluate): their
        # scores of the same rows are computed once, here or by the methods of their names
        self.memo = memo or ScoreMemo()

    def _per_partner(self, values: dict[str, Any]) -> Any:
        """One partner's entry as it is, several keyed by name: the pairs' cached fits keep their layout."""
        return next(iter(values.values())) if len(values) == 1 else values

    def params(self) -> dict[str, Any]:
        # the rows held out follow from the decoder (its metadata), which the fingerprint already names
        partner = self._per_partner({n: p.params() for n, p in self.partners.items()})
        return {"decoder": self.fingerprint, "partner": partner, "fit_rows": _FIT_ROWS, "seed": self.seed,
                "held_out": 1, "keeps": "scores"}  # "keeps": fits cached before fit_scores existed are refitted

    def score_params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"partner_weight": self.partner_weight, "fusion": self.fusion}
        if self.fusion == "tail":
            out["tail_fraction"] = self.tail_fraction
        return out

    def _components(self, feats: FeatureSet) -> torch.Tensor:
        """N x (1 + partners) float64: the heatmap score, then each partner's, all larger = more OOD."""
        parts = [self.heatmap, *self.partners.values()]
        scores = [self.memo.score(d, feats, d.score) for d in parts]
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
        for partner in self.partners.values():
            if partner.needs_fit:
                partner.fit(id_train)
        s = self._components(id_train.take(self.map_rows(len(id_train))))
        self.fit_scores = s
        self.mean = s.mean(0)
        # a component constant on ID data (degenerate decoder) must not divide by zero: unit spread
        std = s.std(0) if len(s) > 1 else torch.ones(s.shape[1], dtype=torch.float64)
        self.std = torch.where(std > 0, std, torch.ones_like(std))

    def score(self, feats: FeatureSet) -> np.ndarray:
        if self.mean is None or self.std is None or self.fit_scores is None:
            raise RuntimeError(f"{self.name} is not fitted")
        c = self._components(feats)
        if self.fusion == "tail":
            fit = self.fit_scores.numpy()
            each = np.stack([tail_nlp(fit[:, i], c[:, i].numpy(), self.tail_fraction) for i in range(c.shape[1])], axis=1)
        else:
            each = ((c - self.mean) / self.std).numpy()
        return each[:, 0] + self.partner_weight * each[:, 1:].sum(axis=1)

    def state(self) -> dict[str, Any]:
        partner = self._per_partner({n: p.state() for n, p in self.partners.items()})
        return {"mean": self.mean, "std": self.std, "scores": self.fit_scores, "partner": partner}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std = state["mean"].double(), state["std"].double()
        self.fit_scores = state["scores"].double()
        partner = state["partner"]
        for name, p in self.partners.items():
            p.load_state(partner if len(self.partners) == 1 else partner[name])


def _factory(partner_names: tuple[str, ...]):  # noqa: ANN202 - a detector factory for the registry
    def build(ctx: DetectorContext) -> Detector:
        if ctx.decoder is None:
            raise ValueError(f"{combined_name(partner_names)} needs a trained decoder")
        cfg = ctx.options.get("config")
        seed = int(getattr(getattr(cfg, "run", None), "seed", 0) or 0)
        heatmap = ctx.detector("heatmap")
        if not isinstance(heatmap, HeatmapDetector):
            raise TypeError(f"{combined_name(partner_names)} reads the heatmap detector's decoder; 'heatmap' is registered as {type(heatmap).__name__}")
        rows = ctx.options.get("decoder_rows")
        weight = float(ctx.param("partner_weight", 1.0))
        fusion, tail = str(ctx.param("fusion", "zscore")), float(ctx.param("tail_fraction", 0.2))
        # the context's instances: shared with the methods of the same names, fitted and scored once
        partners = {p: ctx.detector(p) for p in partner_names}
        return CombinedDetector(heatmap, partners, seed, rows, weight, fusion, tail, ctx.memo)

    return build


for _partners in (*((p,) for p in PARTNERS), *TRIOS):
    register(combined_name(_partners), needs_decoder=True)(_factory(_partners))

"""``heatmap+energy``, ``heatmap+knn``, ``heatmap+vim``: the paper's heatmap score plus one baseline's,
each standardized on ID data, summed.

Why combinations: they look at different things. The heatmap reads the classifier's features through a
decoder trained on outliers; energy reads the logits, KNN the feature geometry, ViM the part of the
feature that the classifier's weights ignore. A short decoder training leaves the heatmap weak where the
others are already telling, so a sum of two, each on the scale of its own ID spread, can rank OOD images
better than either (issue 7's validation runs). Each is a method of its own, not a change to
``heatmap``: the paper's score stays as published.

Standardization: ``z_i(x) = (s_i(x) - mu_i) / sigma_i`` with ``mu_i, sigma_i`` taken over (at most
``_FIT_ROWS``, seeded) ID training images *the decoder was not trained on*; the score is
``z_heatmap + lambda * z_partner`` with ``lambda = evaluate.partner_weight`` (1, the plain sum, by default;
a setting to choose on validation data, see the README). The mean only shifts every score alike; the
spreads set the relative weight.
``evaluate.fusion: tail`` joins the two through their ID tail probabilities instead (Fisher's method):
``-log P_ID(heatmap >= h) - lambda log P_ID(partner >= p)``, each P empirical over the same fit rows up to
their ``1 - evaluate.tail_fraction`` quantile and exponential above it (fitted to the excesses), so scores
beyond every fit row still rank. Why offer it: the heatmap's ID scores are far from Gaussian (a floor and a
long upper tail), so a spread is a poor scale for the tail that sets FPR95, and the weight that repairs
that has to be chosen on validation data; the tail rule needs none (``bench/QUALITY.md``, "Tail
probabilities instead of a weighted z-sum").
Why held out: the decoder fits its own training images closely, so their heatmap spread is too narrow
and would inflate ``z_heatmap`` until the partner no longer counts (measured on a 60-epoch decoder:
standardized on all training images, a max of the two z-scores was the heatmap alone). A partner that learns from ID data (KNN, ViM)
fits on the whole ID training set first, as it does alone. The fit depends on the decoder, so its
fingerprint is part of the parameters: a retrained decoder is refitted, never served a stale fit.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from hood.detectors.base import DETECTORS, Detector, DetectorContext, register
from hood.detectors.heatmap import HeatmapDetector
from hood.engine.features import FeatureSet
from hood.engine.runtime import seeded_indices

_FIT_ROWS = 10_000  # enough for a mean and a spread; bounds the decoder pass over the ID training set
PARTNERS = ("energy", "knn", "vim")  # baselines that score features (ODIN needs images and gradients)


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

    def __init__(self, heatmap: HeatmapDetector, partner: Detector, partner_name: str, seed: int = 0,
                 decoder_rows: torch.Tensor | None = None, partner_weight: float = 1.0, fusion: str = "zscore",
                 tail_fraction: float = 0.2) -> None:
        self.name = f"heatmap+{partner_name}"  # type: ignore[misc]  # one class, several registered names
        self.heatmap, self.partner, self.partner_name = heatmap, partner, partner_name
        self.num_maps = max(heatmap.num_maps, partner.num_maps)
        self.seed = seed
        self.decoder_rows = decoder_rows  # ID training rows the decoder saw: kept out of the statistics
        self.partner_weight = partner_weight  # used when scoring only: the fit (means, spreads) does not depend on it
        self.fusion, self.tail_fraction = fusion, tail_fraction  # scoring only, likewise
        self.fingerprint = decoder_fingerprint(heatmap.decoder)
        self.mean: torch.Tensor | None = None  # (heatmap, partner)
        self.std: torch.Tensor | None = None
        self.fit_scores: torch.Tensor | None = None  # the fit rows' two scores, for the tail fusion

    def params(self) -> dict[str, Any]:
        # the rows held out follow from the decoder (its metadata), which the fingerprint already names
        return {"decoder": self.fingerprint, "partner": self.partner.params(), "fit_rows": _FIT_ROWS, "seed": self.seed,
                "held_out": 1, "keeps": "scores"}  # "keeps": fits cached before fit_scores existed are refitted

    def score_params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"partner_weight": self.partner_weight, "fusion": self.fusion}
        if self.fusion == "tail":
            out["tail_fraction"] = self.tail_fraction
        return out

    def _components(self, feats: FeatureSet) -> torch.Tensor:
        """N x 2 float64: the heatmap score and the partner's, both larger = more OOD."""
        h = torch.from_numpy(np.asarray(self.heatmap.score(feats), dtype=np.float64))
        p = torch.from_numpy(np.asarray(self.partner.score(feats), dtype=np.float64))
        return torch.stack([h, p], dim=1)

    def fit(self, id_train: FeatureSet) -> None:
        if self.partner.needs_fit:
            self.partner.fit(id_train)
        rows = torch.arange(len(id_train))
        if self.decoder_rows is not None:
            unseen = torch.ones(len(id_train), dtype=torch.bool)
            unseen[self.decoder_rows[self.decoder_rows < len(id_train)]] = False
            if int(unseen.sum()) >= 100:  # a decoder trained on (nearly) all of them: all rows, biased but usable
                rows = rows[unseen]
        rows = rows[seeded_indices(len(rows), _FIT_ROWS, self.seed)]
        id_train = id_train.take(rows)
        s = self._components(id_train)
        self.fit_scores = s
        self.mean = s.mean(0)
        # a component constant on ID data (degenerate decoder) must not divide by zero: unit spread
        std = s.std(0) if len(s) > 1 else torch.ones(2, dtype=torch.float64)
        self.std = torch.where(std > 0, std, torch.ones_like(std))

    def score(self, feats: FeatureSet) -> np.ndarray:
        if self.mean is None or self.std is None or self.fit_scores is None:
            raise RuntimeError(f"{self.name} is not fitted")
        c = self._components(feats)
        if self.fusion == "tail":
            fit = self.fit_scores.numpy()
            h, p = (tail_nlp(fit[:, i], c[:, i].numpy(), self.tail_fraction) for i in (0, 1))
            return h + self.partner_weight * p
        z = (c - self.mean) / self.std
        return (z[:, 0] + self.partner_weight * z[:, 1]).numpy()

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "scores": self.fit_scores, "partner": self.partner.state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std = state["mean"].double(), state["std"].double()
        self.fit_scores = state["scores"].double()
        self.partner.load_state(state["partner"])


def _factory(partner_name: str):  # noqa: ANN202 - a detector factory for the registry
    def build(ctx: DetectorContext) -> Detector:
        if ctx.decoder is None:
            raise ValueError(f"heatmap+{partner_name} needs a trained decoder")
        cfg = ctx.options.get("config")
        seed = int(getattr(getattr(cfg, "run", None), "seed", 0) or 0)
        heatmap = HeatmapDetector(ctx.decoder, ctx.device)  # type: ignore[arg-type]
        rows = ctx.options.get("decoder_rows")
        weight = float(ctx.param("partner_weight", 1.0))
        fusion, tail = str(ctx.param("fusion", "zscore")), float(ctx.param("tail_fraction", 0.2))
        return CombinedDetector(heatmap, DETECTORS[partner_name](ctx), partner_name, seed, rows, weight, fusion, tail)

    return build


for _partner in PARTNERS:
    register(f"heatmap+{_partner}", needs_decoder=True)(_factory(_partner))

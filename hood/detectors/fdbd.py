"""fDBD, fast decision boundary distance (Liu, Qin, "Fast Decision Boundary based Out-of-Distribution
Detector", ICML 2024, https://arxiv.org/abs/2312.11536).

ID features lie farther from the decision boundaries of the last linear layer than OOD features, once
that distance is set against how far the feature lies from the ID training mean. For the predicted
class c = argmax_k f_k(z), the distance from z to the boundary between c and class i is closed-form:

    D(z, i) = |(w_c - w_i)^T z + (b_c - b_i)| / ||w_c - w_i||
    fDBD(x) = 1/(K-1) sum_{i != c} D(z, i) / ||z - mu_train||,   s(x) = -fDBD(x)

mu_train is the mean ID training feature, the one thing fitted; there are no parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hood.detectors.base import Detector
from hood.engine.features import FeatureSet

_TINY = 1e-12  # a feature exactly at the mean would divide by zero; it is then the most ID-like there is


class FDBD(Detector):
    """Mean distance to the decision boundaries over the distance to the ID training mean, negated."""

    name = "fdbd"
    needs_fit = True
    needs_final_layer = True

    def __init__(self, model: nn.Module | None = None, **options: Any) -> None:
        super().__init__(model, **options)
        # ||w_c - w_i|| for every pair; the diagonal (no boundary with itself) is 1, its numerator being 0
        self.boundary_norms = torch.cdist(self.weight, self.weight).fill_diagonal_(1.0)
        self.mean: torch.Tensor | None = None

    def fit_features(self, feats: FeatureSet) -> None:
        self.mean = feats.features.double().mean(dim=0)

    def score_features(self, feats: FeatureSet) -> np.ndarray:
        if self.mean is None:
            raise ValueError("fdbd is not fitted")
        z = feats.features.double()
        logits = z @ self.weight.T + self.bias  # this layer's own logits, so numerator and norms agree
        top, pred = logits.max(dim=1)
        distances = (top[:, None] - logits) / self.boundary_norms[pred]  # zero for the predicted class
        mean_distance = distances.sum(dim=1) / (logits.shape[1] - 1)
        return (-mean_distance / (z - self.mean).norm(dim=1).clamp_min(_TINY)).numpy()

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean = state["mean"].double()

"""ReAct (Sun, Guo, Li, "ReAct: Out-of-distribution Detection With Rectified Activations", NeurIPS 2021,
https://arxiv.org/abs/2111.12797).

OOD inputs cause a few abnormally large penultimate activations; clipping them before the last layer
and then taking the energy score separates the two better:

    c = the p-th percentile of all ID-train penultimate activations (p = 90, the paper's default)
    s(x) = -logsumexp( W min(z(x), c) + b )
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from hood.detectors.base import Detector, as_number, energy
from hood.engine.features import FeatureSet
from hood.errors import DetectorParameterError


class ReAct(Detector):
    """Energy of the features clipped at the ``percentile``-th percentile of ID training activations."""

    name = "react"
    needs_fit = True
    needs_final_layer = True

    def __init__(self, model: nn.Module | None = None, *, percentile: float = 90.0, **options: Any) -> None:
        super().__init__(model, **options)
        self.percentile = as_number(self.name, "percentile", percentile)
        if not 0 < self.percentile <= 100:
            raise DetectorParameterError(self.name, "percentile", f"must be in (0, 100], got {percentile}")
        self.clip: float | None = None

    def fit_features(self, feats: FeatureSet) -> None:
        self.clip = float(np.percentile(feats.features.float().numpy().ravel(), self.percentile))

    def score_features(self, feats: FeatureSet) -> np.ndarray:
        if self.clip is None:
            raise ValueError("react is not fitted")
        z = feats.features.double().clamp(max=self.clip)
        return energy(z @ self.weight.T + self.bias).numpy()

    def state(self) -> dict[str, Any]:
        return {"clip": self.clip}

    def load_state(self, state: dict[str, Any]) -> None:
        self.clip = float(state["clip"])

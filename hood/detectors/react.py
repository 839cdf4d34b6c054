"""ReAct (Sun, Guo, Li, "ReAct: Out-of-distribution Detection With Rectified Activations", NeurIPS 2021).

OOD inputs cause a few abnormally large penultimate activations; clipping them before the last layer
and then taking the energy score separates the two better:

    c = the p-th percentile of all ID-train penultimate activations (p = 90, the paper's default)
    s(x) = -logsumexp( W min(z(x), c) + b )
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hood.detectors.base import Detector, DetectorContext, energy, final_layer, register
from hood.engine.features import FeatureSet
from hood.errors import DetectorParameterError


class ReActDetector(Detector):
    name = "react"
    needs_fit = True

    def __init__(self, classifier: torch.nn.Module, percentile: float = 90.0) -> None:
        if not 0 < percentile <= 100:
            raise DetectorParameterError(self.name, "percentile", f"must be in (0, 100], got {percentile}")
        self.weight, self.bias = final_layer(classifier)
        self.percentile = float(percentile)
        self.clip: float | None = None

    def params(self) -> dict[str, Any]:
        return {"percentile": self.percentile}

    def fit(self, id_train: FeatureSet) -> None:
        self.clip = float(np.percentile(id_train.features.float().numpy().ravel(), self.percentile))

    def score(self, feats: FeatureSet) -> np.ndarray:
        if self.clip is None:
            raise RuntimeError("react is not fitted")
        z = feats.features.double().clamp(max=self.clip)
        return energy(z @ self.weight.T + self.bias).numpy()

    def state(self) -> dict[str, Any]:
        return {"clip": self.clip}

    def load_state(self, state: dict[str, Any]) -> None:
        self.clip = float(state["clip"])


@register("react", options={"percentile": "react_percentile"})
def _build(ctx: DetectorContext) -> Detector:
    return ReActDetector(ctx.classifier, float(ctx.param("react_percentile")))

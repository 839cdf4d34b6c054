"""NCI, neural-collapse inspired detection (Liu, Qin, "Detecting Out-of-distribution through the Lens of Neural
Collapse", CVPR 2025, https://arxiv.org/abs/2311.01479).

Under neural collapse an ID feature, centred on the ID training mean mu_G, points along the weight vector of
its predicted class, and ID features lie farther from the origin than OOD ones:

    c = argmax_k f_k(z),   s(x) = -( w_c . (z - mu_G) / ||z - mu_G||  +  alpha ||z||_1 )

as the authors' code computes it (the weight's norm is not divided out). ``alpha`` = 1e-4 is the value the
OpenOOD v1.5 CIFAR-10 leaderboard runs with (its sweep: 1e-4 .. 0.1); mu_G is fitted on the ID training features.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hood.detectors.base import Detector, as_number
from hood.engine.features import FeatureSet
from hood.errors import DetectorParameterError


class NCI(Detector):
    """Alignment of the centred feature with its predicted class's weight, plus ``alpha`` times its L1 norm."""

    name = "nci"
    needs_fit = True
    needs_final_layer = True

    def __init__(self, model: nn.Module | None = None, *, alpha: float = 1e-4, **options: Any) -> None:
        super().__init__(model, **options)
        self.alpha = as_number(self.name, "alpha", alpha)
        if self.alpha < 0:
            raise DetectorParameterError(self.name, "alpha", f"must be non-negative, got {alpha}")
        self.mean: torch.Tensor | None = None  # D: the ID training features' mean

    def fit_features(self, feats: FeatureSet) -> None:
        self.mean = feats.features.double().mean(dim=0)

    def score_features(self, feats: FeatureSet) -> np.ndarray:
        if self.mean is None:
            raise ValueError("nci is not fitted")
        z = feats.features.double()
        centred = z - self.mean
        pred = (z @ self.weight.T + self.bias).argmax(dim=1)
        norm = centred.norm(dim=1)
        # a feature exactly at the mean has no direction: no alignment, only its norm speaks
        align = torch.where(norm > 0, (centred * self.weight[pred]).sum(dim=1) / norm.clamp_min(1e-300), 0.0)
        return (-(align + self.alpha * z.abs().sum(dim=1))).numpy()

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean = state["mean"].double()

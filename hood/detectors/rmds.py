"""Relative Mahalanobis distance (Ren, Fort, Liu, Roy, Padhy, Lakshminarayanan, "A Simple Fix to Mahalanobis
Distance for Improving Near-OOD Detection", 2021, https://arxiv.org/abs/2106.09022).

Mahalanobis' class-conditional Gaussians (shared covariance) minus a background Gaussian fitted on every ID
training feature regardless of class, which removes the directions that tell nothing about the classes:

    d_c(z) = (z - mu_c)^T Sigma^+ (z - mu_c),   d_0(z) = (z - mu_0)^T Sigma_0^+ (z - mu_0)
    s(x) = min_c d_c(z) - d_0(z)

Both covariances are normalized by the number of training rows and pseudo-inverted, as for Mahalanobis (the
authors and OpenOOD fit them the same way). No parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hood.detectors.mahalanobis import Mahalanobis, class_gaussians, squared_distances
from hood.engine.features import FeatureSet


class RMDS(Mahalanobis):
    """Distance to the nearest class Gaussian relative to the distance to the background Gaussian."""

    name = "rmds"

    def __init__(self, model: nn.Module | None = None, **options: Any) -> None:
        super().__init__(model, **options)
        self.background_mean: torch.Tensor | None = None  # 1 x D
        self.background_precision: torch.Tensor | None = None  # D x D

    def fit_features(self, feats: FeatureSet) -> None:
        super().fit_features(feats)
        z = feats.features.double()
        self.background_mean, self.background_precision = class_gaussians(z, torch.zeros(len(z), dtype=torch.long))

    def score_features(self, feats: FeatureSet) -> np.ndarray:
        if self.background_mean is None or self.background_precision is None:
            raise ValueError("rmds is not fitted")
        z = feats.features.double()
        d_background = squared_distances(z, self.background_mean, self.background_precision)[:, 0]
        return super().score_features(feats) - d_background.numpy()

    def state(self) -> dict[str, Any]:
        return {**super().state(), "background_mean": self.background_mean, "background_precision": self.background_precision}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.background_mean, self.background_precision = state["background_mean"].double(), state["background_precision"].double()

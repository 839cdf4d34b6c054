"""Mahalanobis distance on penultimate features (Lee, Lee, Lee, Shin, "A Simple Unified Framework for
Detecting Out-of-Distribution Samples and Adversarial Attacks", NeurIPS 2018, https://arxiv.org/abs/1807.03888).

Class-conditional Gaussians with a shared ("tied") covariance, fitted on the ID training set with the
true labels:

    mu_c = mean of class c,   Sigma = 1/N sum_c sum_{i in c} (z_i - mu_c)(z_i - mu_c)^T
    s(x) = min_c (z - mu_c)^T Sigma^+ (z - mu_c)

The paper's input preprocessing and its multi-layer logistic ensemble (which need OOD data to tune)
are left out, as in the common post-hoc benchmarks. Sigma^+ is the pseudo-inverse, so collapsed
feature directions (ReLU units that never fire) do not break the fit. No parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hood.detectors.base import Detector
from hood.engine.features import FeatureSet

CHUNK = 4096  # rows per distance product


def class_gaussians(z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class means (C x D, classes in ascending order) and the shared covariance's pseudo-inverse (D x D)."""
    classes = torch.unique(y)
    means = torch.stack([z[y == c].mean(dim=0) for c in classes])
    centered = z - means[torch.searchsorted(classes, y)]
    return means, torch.linalg.pinv(centered.T @ centered / len(z), hermitian=True)


def squared_distances(z: torch.Tensor, means: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """``(z - mu_c)^T P (z - mu_c)`` for every row of ``z`` and every mean: n x C, in chunks of rows."""
    mu_p = means @ precision
    mu_term = (mu_p * means).sum(dim=1)
    out = []
    for start in range(0, len(z), CHUNK):
        x = z[start : start + CHUNK]
        out.append((x @ precision * x).sum(dim=1, keepdim=True) - 2 * x @ mu_p.T + mu_term)
    return torch.cat(out) if out else torch.zeros(0, len(means), dtype=z.dtype)


class Mahalanobis(Detector):
    """Distance to the nearest class Gaussian, shared covariance."""

    name = "mahalanobis"
    needs_fit = True
    needs_labels = True

    def __init__(self, model: nn.Module | None = None, **options: Any) -> None:
        super().__init__(model, **options)
        self.means: torch.Tensor | None = None  # C x D
        self.precision: torch.Tensor | None = None  # D x D

    def fit_features(self, feats: FeatureSet) -> None:
        if feats.labels is None:
            raise ValueError(f"{self.name} needs the labels of the ID training set")
        self.means, self.precision = class_gaussians(feats.features.double(), feats.labels.long())

    def score_features(self, feats: FeatureSet) -> np.ndarray:
        if self.means is None or self.precision is None:
            raise ValueError(f"{self.name} is not fitted")
        return squared_distances(feats.features.double(), self.means, self.precision).min(dim=1).values.numpy()

    def state(self) -> dict[str, Any]:
        return {"means": self.means, "precision": self.precision}

    def load_state(self, state: dict[str, Any]) -> None:
        self.means, self.precision = state["means"].double(), state["precision"].double()

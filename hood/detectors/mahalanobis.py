"""Mahalanobis distance on penultimate features (Lee, Lee, Lee, Shin, "A Simple Unified Framework for
Detecting Out-of-Distribution Samples and Adversarial Attacks", NeurIPS 2018).

Class-conditional Gaussians with a shared ("tied") covariance, fitted on the ID training set with the
true labels:

    mu_c = mean of class c,   Sigma = 1/N sum_c sum_{i in c} (z_i - mu_c)(z_i - mu_c)^T
    s(x) = min_c (z - mu_c)^T Sigma^+ (z - mu_c)

The paper's input preprocessing and its multi-layer logistic ensemble (which need OOD data to tune)
are left out, as in the common post-hoc benchmarks. Sigma^+ is the pseudo-inverse, so collapsed
feature directions (ReLU units that never fire) do not break the fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hood.detectors.base import Detector, DetectorContext, register
from hood.engine.features import FeatureSet
from hood.errors import DataError


class MahalanobisDetector(Detector):
    name = "mahalanobis"
    needs_fit = True

    def __init__(self, chunk: int = 4096) -> None:
        self.means: torch.Tensor | None = None  # C x D
        self.precision: torch.Tensor | None = None  # D x D
        self.chunk = chunk

    def fit(self, id_train: FeatureSet) -> None:
        if id_train.labels is None:
            raise DataError("mahalanobis needs the labels of the ID training set")
        z = id_train.features.double()
        y = id_train.labels.long()
        classes = torch.unique(y)
        means = torch.stack([z[y == c].mean(dim=0) for c in classes])
        centered = z - means[torch.searchsorted(classes, y)]
        cov = centered.T @ centered / len(z)
        self.means = means
        self.precision = torch.linalg.pinv(cov, hermitian=True)

    def score(self, feats: FeatureSet) -> np.ndarray:
        if self.means is None or self.precision is None:
            raise RuntimeError("mahalanobis is not fitted")
        p, mu = self.precision, self.means
        mu_p = mu @ p  # C x D
        mu_term = (mu_p * mu).sum(dim=1)  # C
        out = []
        for start in range(0, len(feats), self.chunk):
            z = feats.features[start : start + self.chunk].double()
            d = (z @ p * z).sum(dim=1, keepdim=True) - 2 * z @ mu_p.T + mu_term  # n x C
            out.append(d.min(dim=1).values)
        return torch.cat(out).numpy()

    def state(self) -> dict[str, Any]:
        return {"means": self.means, "precision": self.precision}

    def load_state(self, state: dict[str, Any]) -> None:
        self.means, self.precision = state["means"].double(), state["precision"].double()


@register("mahalanobis")
def _build(ctx: DetectorContext) -> Detector:
    return MahalanobisDetector()

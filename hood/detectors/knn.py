"""Deep nearest neighbours (Sun, Ming, Zhu, Li, "Out-of-Distribution Detection with Deep Nearest
Neighbors", ICML 2022, https://arxiv.org/abs/2204.06507).

Penultimate features are L2-normalized; the score is the distance to the k-th nearest ID training
feature:

    z' = z / ||z||,   s(x) = || z'(x) - z'_(k) ||   (k = 50, the paper's choice for CIFAR-10)

For unit vectors ``||a - b||^2 = 2 - 2 a.b``, so the neighbours come from chunked matrix products and
``topk`` on the similarities (exact, no approximate index), on the detector's device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hood.detectors.base import Detector
from hood.engine.features import FeatureSet
from hood.errors import DetectorParameterError

CHUNK = 2048  # query rows per similarity product: bounds the n x N matrix in memory


class KNN(Detector):
    """Distance to the ``k``-th nearest ID training feature (normalized)."""

    name = "knn"
    needs_fit = True

    def __init__(self, model: nn.Module | None = None, *, k: int = 50, **options: Any) -> None:
        super().__init__(model, **options)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise DetectorParameterError(self.name, "k", f"must be a positive integer, got {k!r}")
        self.k = int(k)
        self.bank: torch.Tensor | None = None  # N x D, unit rows

    def check_fit_rows(self, n: int) -> None:
        """The k-th neighbour must exist: refused, not silently the farthest one (and recorded as k)."""
        if self.k > n:
            raise DetectorParameterError(self.name, "k", f"is {self.k}, more than the {n} ID training rows it is fitted "
                                                         f"on; choose k of at most {n}")

    def fit_features(self, feats: FeatureSet) -> None:
        self.check_fit_rows(len(feats))
        self.bank = F.normalize(feats.features.float(), dim=1)

    def score_features(self, feats: FeatureSet, chunk: int = CHUNK) -> np.ndarray:
        if self.bank is None:
            raise ValueError("knn is not fitted")
        bank = self.bank.to(self.device)
        k = min(self.k, len(bank))  # a bank loaded from an older fit may be smaller than k
        out = []
        for start in range(0, len(feats), chunk):
            q = F.normalize(feats.features[start : start + chunk].float().to(self.device), dim=1)
            kth = (q @ bank.T).topk(k, dim=1).values[:, -1]
            out.append((2 - 2 * kth.double()).clamp_min(0).sqrt().cpu())
        return torch.cat(out).numpy()

    def state(self) -> dict[str, Any]:
        return {"bank": self.bank}

    def load_state(self, state: dict[str, Any]) -> None:
        self.bank = state["bank"].float()

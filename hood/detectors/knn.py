"""Deep nearest neighbours (Sun, Ming, Zhu, Li, "Out-of-Distribution Detection with Deep Nearest
Neighbors", ICML 2022).

Penultimate features are L2-normalized; the score is the distance to the k-th nearest ID training
feature:

    z' = z / ||z||,   s(x) = || z'(x) - z'_(k) ||   (k = 50, the paper's choice for CIFAR)

For unit vectors ``||a - b||^2 = 2 - 2 a.b``, so the neighbours come from chunked matrix products and
``topk`` on the similarities (exact, no approximate index), on the run's device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hood.detectors.base import Detector, DetectorContext, register
from hood.engine.features import FeatureSet
from hood.errors import DetectorParameterError


class KNNDetector(Detector):
    name = "knn"
    needs_fit = True

    def __init__(self, k: int = 50, device: torch.device | None = None, chunk: int = 2048) -> None:
        if k < 1:
            raise DetectorParameterError(self.name, "k", f"must be a positive integer, got {k}")
        self.k = int(k)
        self.device = device or torch.device("cpu")
        self.chunk = chunk
        self.bank: torch.Tensor | None = None  # N x D, unit rows

    def params(self) -> dict[str, Any]:
        return {"k": self.k}

    def fit(self, id_train: FeatureSet) -> None:
        self.bank = F.normalize(id_train.features.float(), dim=1)

    def score(self, feats: FeatureSet) -> np.ndarray:
        if self.bank is None:
            raise RuntimeError("knn is not fitted")
        bank = self.bank.to(self.device)
        k = min(self.k, len(bank))  # a training set smaller than k: the farthest neighbour there is
        out = []
        for start in range(0, len(feats), self.chunk):
            q = F.normalize(feats.features[start : start + self.chunk].float().to(self.device), dim=1)
            kth = (q @ bank.T).topk(k, dim=1).values[:, -1]
            out.append((2 - 2 * kth.double()).clamp_min(0).sqrt().cpu())
        return torch.cat(out).numpy()

    def state(self) -> dict[str, Any]:
        return {"bank": self.bank}

    def load_state(self, state: dict[str, Any]) -> None:
        self.bank = state["bank"].float()


@register("knn", options={"k": "knn_k"})
def _build(ctx: DetectorContext) -> Detector:
    return KNNDetector(int(ctx.param("knn_k")), ctx.device)

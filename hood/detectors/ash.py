"""ASH-S, activation shaping by scaling (Djurisic, Bozanic, Ashok, Liu, "Extremely Simple Activation
Shaping for Out-of-Distribution Detection", ICLR 2023, https://arxiv.org/abs/2209.09858).

Per sample, the penultimate activations below their own p-th percentile are set to zero and the k
that remain are scaled by exp(total / what they carry), which grows the more of the total was pruned;
the energy score is taken of the shaped features through the last linear layer:

    k = D - round(D p / 100),   s1 = sum_j z_j,   s2 = sum of the k largest z_j
    z' = exp(s1 / s2) * (z with all but its k largest entries set to 0)
    s(x) = -logsumexp( W z'(x) + b )

ASH-S is the variant the paper recommends (of prune, binarize and scale), with p = 95 its CIFAR-10 choice (6 of
WRN-40-2's 128 activations remain). The best percentile depends on the classifier, so the recommended configs
set the one their validation split chose. Nothing is fitted: every sample is shaped by its own statistics.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hood.detectors.base import Detector, as_number, energy
from hood.engine.features import FeatureSet
from hood.errors import DetectorParameterError


def kept_count(feature_dim: int, percentile: float, method: str) -> int:
    """How many activations lie above the p-th percentile of a ``feature_dim``-d feature (at least one)."""
    if not 0 <= percentile < 100:
        raise DetectorParameterError(method, "percentile", f"must be in [0, 100), got {percentile}")
    k = feature_dim - round(feature_dim * percentile / 100)
    if k < 1:
        raise DetectorParameterError(method, "percentile", f"{percentile} keeps none of the {feature_dim} activations; use a lower one")
    return k


def top_mask(z: torch.Tensor, k: int) -> torch.Tensor:
    """True at the ``k`` largest activations of each row."""
    return torch.zeros_like(z, dtype=torch.bool).scatter_(1, z.topk(k, dim=1).indices, True)


def sharpening(z: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """``exp(s1 / s2)`` per row, s1 the sum of all activations and s2 that of the ``top`` ones. A row whose
    top activations sum to zero (an all-zero feature) is left unscaled, 0/0 having no meaning."""
    s1, s2 = z.sum(dim=1), (z * top).sum(dim=1)
    ratio = torch.where(s2 != 0, s1 / torch.where(s2 != 0, s2, 1.0), 0.0)
    return torch.exp(ratio)


class ASH(Detector):
    """ASH-S: energy of the features pruned below their own ``percentile``-th percentile and rescaled."""

    name = "ash"
    needs_final_layer = True

    def __init__(self, model: nn.Module | None = None, *, percentile: float = 95.0, **options: Any) -> None:
        super().__init__(model, **options)
        self.percentile = as_number(self.name, "percentile", percentile)
        self.k = kept_count(self.weight.shape[1], self.percentile, self.name)

    def shape(self, z: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
        """The features the last layer sees: the ``top`` ones alone, sharpened."""
        return z * top * sharpening(z, top)[:, None]

    def score_features(self, feats: FeatureSet) -> np.ndarray:
        z = feats.features.double()
        return energy(self.shape(z, top_mask(z, self.k)) @ self.weight.T + self.bias).numpy()

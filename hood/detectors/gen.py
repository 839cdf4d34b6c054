"""GEN, generalized entropy (Liu, Lochman, Zach, "GEN: Pushing the Limits of Softmax-Based
Out-of-Distribution Detection", CVPR 2023,
https://openaccess.thecvf.com/content/CVPR2023/html/Liu_GEN_Pushing_the_Limits_of_Softmax-Based_Out-of-Distribution_Detection_CVPR_2023_paper.html).

A generalized (Tsallis-like) entropy of the softmax over its M largest probabilities p_(1) >= ... >= p_(M):

    G_gamma(p) = sum_{j=1..M} p_(j)^gamma (1 - p_(j))^gamma,   s(x) = G_gamma(softmax(f(x)))

A confident prediction has all terms near zero; a flat one does not. A small gamma weights the small
probabilities more than the Shannon entropy does, and the top-M cut drops the near-zero tail where
that weight would be noise. The paper's defaults: gamma = 0.1, M = 100, capped at the number of classes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hood.detectors.base import Detector, as_number
from hood.engine.features import FeatureSet
from hood.errors import DetectorParameterError


class GEN(Detector):
    """Generalized entropy of the ``m`` largest softmax probabilities, exponent ``gamma``."""

    name = "gen"

    def __init__(self, model: nn.Module | None = None, *, gamma: float = 0.1, m: int = 100, **options: Any) -> None:
        super().__init__(model, **options)
        self.gamma = as_number(self.name, "gamma", gamma)
        self.m = as_number(self.name, "m", m, integer=True)
        if not self.gamma > 0:
            raise DetectorParameterError(self.name, "gamma", f"must be positive, got {gamma}")
        if self.m < 1:
            raise DetectorParameterError(self.name, "m", f"must be at least 1, got {m}")

    def score_features(self, feats: FeatureSet) -> np.ndarray:
        p = torch.softmax(feats.logits.double(), dim=1)
        top = p.topk(min(self.m, p.shape[1]), dim=1).values
        return (top.pow(self.gamma) * (1 - top).pow(self.gamma)).sum(dim=1).numpy()

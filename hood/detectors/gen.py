"""GEN, generalized entropy (Liu, Lochman, Zach, "GEN: Pushing the Limits of Softmax-Based
Out-of-Distribution Detection", CVPR 2023,
https://openaccess.thecvf.com/content/CVPR2023/html/Liu_GEN_Pushing_the_Limits_of_Softmax-Based_Out-of-Distribution_Detection_CVPR_2023_paper.html).

A generalized (Tsallis-like) entropy of the softmax over its M largest probabilities p_(1) >= ... >= p_(M):

    G_gamma(p) = sum_{j=1..M} p_(j)^gamma (1 - p_(j))^gamma,   s(x) = G_gamma(softmax(f(x)))

A confident prediction has all terms near zero; a flat one does not. A small gamma weights the small
probabilities more than the Shannon entropy does, and the top-M cut drops the near-zero tail where
that weight would be noise. The paper's defaults: gamma = 0.1, M = 100, capped at the number of classes
(``evaluate.gen_gamma``, ``evaluate.gen_m``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hood.detectors.base import Detector, DetectorContext, register
from hood.engine.features import FeatureSet
from hood.errors import DetectorParameterError


class GENDetector(Detector):
    name = "gen"

    def __init__(self, gamma: float = 0.1, m: int = 100) -> None:
        if not gamma > 0:
            raise DetectorParameterError(self.name, "gamma", f"must be positive, got {gamma}")
        if m < 1:
            raise DetectorParameterError(self.name, "m", f"must be at least 1, got {m}")
        self.gamma = float(gamma)
        self.m = int(m)

    def score_params(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "M": self.m}

    def score(self, feats: FeatureSet) -> np.ndarray:
        p = torch.softmax(feats.logits.double(), dim=1)
        top = p.topk(min(self.m, p.shape[1]), dim=1).values
        return (top.pow(self.gamma) * (1 - top).pow(self.gamma)).sum(dim=1).numpy()


@register("gen", options={"gamma": "gen_gamma", "m": "gen_m"})
def _build(ctx: DetectorContext) -> Detector:
    return GENDetector(float(ctx.param("gen_gamma")), int(ctx.param("gen_m")))

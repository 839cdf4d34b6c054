"""SCALE (Xu, Lian, Yang, "Scaling for Training Time and Post-hoc Out-of-distribution Detection
Enhancement", ICLR 2024, https://arxiv.org/abs/2310.00227).

ASH's scaling factor without its pruning: the paper finds the pruning costs ID accuracy and the
scaling alone is what separates ID from OOD. Per sample, with the same percentile statistics as ASH:

    k = D - round(D p / 100),   s1 = sum_j z_j,   s2 = sum of the k largest z_j
    z' = exp(s1 / s2) * z
    s(x) = -logsumexp( W z'(x) + b )

p = 85, the authors' default (``evaluate.scale_percentile``). Nothing is fitted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hood.detectors.ash import kept_count, sharpening, top_mask
from hood.detectors.base import Detector, DetectorContext, energy, final_layer, register
from hood.engine.features import FeatureSet


class SCALEDetector(Detector):
    name = "scale"

    def __init__(self, classifier: torch.nn.Module, percentile: float = 85.0) -> None:
        self.weight, self.bias = final_layer(classifier)
        self.percentile = float(percentile)
        self.k = kept_count(self.weight.shape[1], self.percentile, self.name)

    def score_params(self) -> dict[str, Any]:
        return {"percentile": self.percentile}

    def score(self, feats: FeatureSet) -> np.ndarray:
        z = feats.features.double()
        scaled = z * sharpening(z, top_mask(z, self.k))[:, None]
        return energy(scaled @ self.weight.T + self.bias).numpy()


@register("scale")
def _build(ctx: DetectorContext) -> Detector:
    return SCALEDetector(ctx.classifier, float(ctx.param("scale_percentile", 85.0)))

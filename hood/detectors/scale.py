"""SCALE (Xu, Lian, Yang, "Scaling for Training Time and Post-hoc Out-of-distribution Detection
Enhancement", ICLR 2024, https://arxiv.org/abs/2310.00227).

ASH's scaling factor without its pruning: the paper finds the pruning costs ID accuracy and the
scaling alone is what separates ID from OOD. Per sample, with the same percentile statistics as ASH:

    k = D - round(D p / 100),   s1 = sum_j z_j,   s2 = sum of the k largest z_j
    z' = exp(s1 / s2) * z
    s(x) = -logsumexp( W z'(x) + b )

p = 85 by default, the authors' (``evaluate.scale_percentile``); the recommended configs set the one their
validation split chose. Nothing is fitted.
"""

from __future__ import annotations

import torch

from hood.detectors.ash import ASHDetector, sharpening
from hood.detectors.base import Detector, DetectorContext, register


class SCALEDetector(ASHDetector):
    name = "scale"

    def __init__(self, classifier: torch.nn.Module, percentile: float = 85.0) -> None:
        super().__init__(classifier, percentile)

    def shape(self, z: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
        """Every feature, sharpened: ``top`` only sets the factor."""
        return z * sharpening(z, top)[:, None]


@register("scale", options={"percentile": "scale_percentile"})
def _build(ctx: DetectorContext) -> Detector:
    return SCALEDetector(ctx.classifier, float(ctx.param("scale_percentile")))

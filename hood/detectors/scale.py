"""SCALE (Xu, Lian, Yang, "Scaling for Training Time and Post-hoc Out-of-distribution Detection
Enhancement", ICLR 2024, https://arxiv.org/abs/2310.00227).

ASH's scaling factor without its pruning: the paper finds the pruning costs ID accuracy and the
scaling alone is what separates ID from OOD. Per sample, with the same percentile statistics as ASH:

    k = D - round(D p / 100),   s1 = sum_j z_j,   s2 = sum of the k largest z_j
    z' = exp(s1 / s2) * z
    s(x) = -logsumexp( W z'(x) + b )

p = 85 by default, the authors'; the recommended configs set the one their validation split chose. Nothing is
fitted.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hood.detectors.ash import ASH, sharpening


class SCALE(ASH):
    """Energy of every feature, rescaled by ASH-S's factor at the ``percentile``-th percentile."""

    name = "scale"

    def __init__(self, model: nn.Module | None = None, *, percentile: float = 85.0, **options: Any) -> None:
        super().__init__(model, percentile=percentile, **options)

    def shape(self, z: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
        """Every feature, sharpened: ``top`` only sets the factor."""
        return z * sharpening(z, top)[:, None]

"""Maximum softmax probability (Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and
Out-of-Distribution Examples in Neural Networks", ICLR 2017).

``s(x) = -max_k softmax(f(x))_k``: a confident prediction is taken as in-distribution.
"""

from __future__ import annotations

import numpy as np
import torch

from hood.detectors.base import Detector, DetectorContext, register
from hood.engine.features import FeatureSet


class MSPDetector(Detector):
    name = "msp"

    def score(self, feats: FeatureSet) -> np.ndarray:
        return (-torch.softmax(feats.logits.double(), dim=1).amax(dim=1)).numpy()


@register("msp")
def _build(ctx: DetectorContext) -> Detector:
    return MSPDetector()

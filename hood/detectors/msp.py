"""Maximum softmax probability (Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and
Out-of-Distribution Examples in Neural Networks", ICLR 2017, https://arxiv.org/abs/1610.02136).

``s(x) = -max_k softmax(f(x))_k``: a confident prediction is taken as in-distribution. No parameters.
"""

from __future__ import annotations

import numpy as np
import torch

from hood.detectors.base import Detector
from hood.engine.features import FeatureSet


class MSP(Detector):
    """Maximum softmax probability, negated."""

    name = "msp"

    def score_features(self, feats: FeatureSet) -> np.ndarray:
        return (-torch.softmax(feats.logits.double(), dim=1).amax(dim=1)).numpy()

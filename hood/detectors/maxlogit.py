"""Maximum logit (Hendrycks et al., "Scaling Out-of-Distribution Detection for Real-World Settings",
ICML 2022, https://arxiv.org/abs/1911.11132).

``s(x) = -max_k f_k(x)``: MSP without the softmax normalization, which discards how large the winning
logit is. No parameters.
"""

from __future__ import annotations

import numpy as np

from hood.detectors.base import Detector
from hood.engine.features import FeatureSet


class MaxLogit(Detector):
    """The largest logit, negated."""

    name = "maxlogit"

    def score_features(self, feats: FeatureSet) -> np.ndarray:
        return (-feats.logits.double().amax(dim=1)).numpy()

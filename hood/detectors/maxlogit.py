"""Maximum logit (Hendrycks et al., "Scaling Out-of-Distribution Detection for Real-World Settings",
ICML 2022).

``s(x) = -max_k f_k(x)``: MSP without the softmax normalization, which discards how large the winning
logit is.
"""

from __future__ import annotations

import numpy as np

from hood.detectors.base import Detector, DetectorContext, register
from hood.engine.features import FeatureSet


class MaxLogitDetector(Detector):
    name = "maxlogit"

    def score(self, feats: FeatureSet) -> np.ndarray:
        return (-feats.logits.double().amax(dim=1)).numpy()


@register("maxlogit")
def _build(ctx: DetectorContext) -> Detector:
    return MaxLogitDetector()

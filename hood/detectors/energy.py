"""Energy score (Liu, Wang, Owens, Li, "Energy-based Out-of-distribution Detection", NeurIPS 2020).

``s(x) = E(x) = -T logsumexp_k(f_k(x) / T)`` with ``T = 1``: the free energy of the logits, lower for
in-distribution data; unlike the softmax it does not saturate for confident inputs.
"""

from __future__ import annotations

import numpy as np

from hood.detectors.base import Detector, DetectorContext, energy, register
from hood.engine.features import FeatureSet


class EnergyDetector(Detector):
    name = "energy"

    def score(self, feats: FeatureSet) -> np.ndarray:
        return energy(feats.logits, 1.0).numpy()


@register("energy")
def _build(ctx: DetectorContext) -> Detector:
    return EnergyDetector()

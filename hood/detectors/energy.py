"""Energy score (Liu, Wang, Owens, Li, "Energy-based Out-of-distribution Detection", NeurIPS 2020,
https://arxiv.org/abs/2010.03759).

``s(x) = E(x) = -T logsumexp_k(f_k(x) / T)`` with ``T = 1`` (the paper's choice for post-hoc use): the free
energy of the logits, lower for in-distribution data; unlike the softmax it does not saturate for confident
inputs.
"""

from __future__ import annotations

import numpy as np

from hood.detectors.base import Detector, energy
from hood.engine.features import FeatureSet


class Energy(Detector):
    """Free energy of the logits."""

    name = "energy"

    def score_features(self, feats: FeatureSet) -> np.ndarray:
        return energy(feats.logits, 1.0).numpy()

"""Outlier mining: which of a random draw of auxiliary outliers the decoder trains on (issue 7's "how the
pool is sampled").

The paper trains on a uniform random sample of the pool. Outlier-exposure work finds that most of a random
draw is easy, rejected by any detector already, and that training on the informative outliers, those near the
ID boundary, is what moves the detector (Chen et al., ATOM, ECML-PKDD 2021; Ming et al., POEM, ICML 2022).
``decoder.ood_candidates`` C > 1 draws C times the outliers at random and keeps the ``num_ood`` that the frozen
classifier is most confident about (highest maximum softmax): the outliers it would take for ID images.
C = 1 is the paper's random sample, drawn exactly as before this option existed.
"""

from __future__ import annotations

import torch


def most_confident(logits: torch.Tensor, keep: int) -> torch.Tensor:
    """Row indices, ascending, of the ``keep`` rows with the highest maximum softmax (ties: the lower row)."""
    if not 1 <= keep <= len(logits):
        raise ValueError(f"cannot keep {keep} of {len(logits)} outliers")
    confidence = logits.float().softmax(dim=1).amax(dim=1)
    # a stable descending sort: equal confidences keep their row order, so the choice is reproducible
    order = torch.sort(confidence, descending=True, stable=True).indices
    return order[:keep].sort().values


def candidate_count(pool_size: int, num_ood: int, candidates: int) -> int:
    """How many outliers to draw before mining: ``candidates * num_ood``, at most the whole pool, and never
    fewer than ``num_ood`` (train-decoder caps ``num_ood`` at the pool's size first)."""
    return max(num_ood, min(pool_size, candidates * num_ood))

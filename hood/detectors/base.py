"""One interface for every detector, so ``evaluate`` loops over them without knowing any.

A detector scores a :class:`FeatureSet` (features, logits, optional stage maps of a data set, computed
once per run); larger scores mean more out-of-distribution. Detectors that learn from ID data
(``needs_fit``) get the ID training FeatureSet once through :meth:`fit`. The few that need images and
gradients (ODIN) set ``needs_images`` and implement :meth:`score_images` instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from hood.engine.features import FeatureSet


@dataclass
class DetectorContext:
    """What a detector may need to be built: the classifier, the trained decoder, the device, options."""

    classifier: torch.nn.Module
    device: torch.device
    decoder: torch.nn.Module | None = None
    options: dict[str, Any] = field(default_factory=dict)


class Detector(ABC):
    name: ClassVar[str]
    needs_fit: ClassVar[bool] = False
    needs_images: ClassVar[bool] = False
    num_maps: int = 0  # classifier stage maps the detector reads (heatmap decoder skips)

    def fit(self, id_train: FeatureSet) -> None:
        """Learn from the ID training set; a no-op for post-hoc detectors that need nothing."""

    @abstractmethod
    def score(self, feats: FeatureSet) -> np.ndarray:
        """OOD score per sample, larger = more OOD."""

    def state(self) -> dict[str, Any]:
        """What :meth:`fit` learned, as tensors, so a run can cache it."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        pass


DETECTORS: dict[str, Callable[[DetectorContext], Detector]] = {}


def register(name: str) -> Callable[[Callable[[DetectorContext], Detector]], Callable[[DetectorContext], Detector]]:
    def deco(factory: Callable[[DetectorContext], Detector]) -> Callable[[DetectorContext], Detector]:
        DETECTORS[name] = factory
        return factory

    return deco

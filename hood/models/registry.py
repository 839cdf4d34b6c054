"""Architecture names to constructors; the one place that knows which classifiers exist."""

from __future__ import annotations

from collections.abc import Callable

from hood.models.base import Classifier
from hood.models.names import NATIVE_SIZE  # noqa: F401  (re-exported: the registry is where callers look)
from hood.models.resnet import resnet18, resnet50
from hood.models.wideresnet import wrn10_2, wrn40_2

ARCHITECTURES: dict[str, Callable[[int], Classifier]] = {
    "resnet18": resnet18,
    "wrn40_2": wrn40_2,
    "resnet50": resnet50,
    "wrn10_2": wrn10_2,
}


def build_classifier(arch: str, num_classes: int) -> Classifier:
    if arch not in ARCHITECTURES:
        raise KeyError(arch)
    return ARCHITECTURES[arch](num_classes)

"""The names of hood's own classifier architectures, without torch: configuration is validated (and ``hood
--help`` starts) before any model is built, and importing torch costs seconds."""

from __future__ import annotations

ARCHITECTURE_NAMES: tuple[str, ...] = ("resnet18", "wrn40_2", "resnet50", "wrn10_2")

# image size each architecture is built for (the decoder's output matches it)
NATIVE_SIZE = {"resnet18": 32, "wrn40_2": 32, "resnet50": 64, "wrn10_2": 32}

"""The interface every classifier offers the engine: logits, penultimate features, stage maps."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ClassifierOutput:
    """What one forward pass yields. ``maps`` run shallow to deep; the last is the one pooled into
    ``features``, so ``fw_layers`` skips take maps from the end."""

    features: torch.Tensor
    logits: torch.Tensor
    maps: list[torch.Tensor]


class Classifier(nn.Module):
    """Base class: subclasses build ``linear`` and implement :meth:`stage_maps`."""

    feature_dim: int
    num_classes: int
    linear: nn.Linear

    def stage_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward_all(self, x: torch.Tensor) -> ClassifierOutput:
        maps = self.stage_maps(x)
        features = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(maps[-1], 1), 1)
        return ClassifierOutput(features, self.linear(features), maps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x).logits

    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

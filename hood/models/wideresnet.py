"""WRN-40-2 as in the authors' code: pre-activation wide blocks, dropout 0.3, biased convolutions.

The authors' port keeps Torch's BatchNorm momentum 0.9 on the final ``bn1`` (docs/method.md, defect 5), which
makes its running statistics nearly those of the last training batch. Momentum only matters while
training and is not stored in a checkpoint, so hood uses PyTorch's 0.1 everywhere: the authors' weights
still load and evaluate exactly as they were saved.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hood.models.base import Classifier


class WideBasic(nn.Module):
    """BN-ReLU-conv, dropout, BN-ReLU-conv(stride) plus a 1x1 projection when the shape changes."""

    def __init__(self, in_planes: int, planes: int, dropout: float, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, 1, 1, bias=True)
        self.dropout = nn.Dropout(p=dropout)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.conv1(F.relu(self.bn1(x))))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + self.shortcut(x)


class WideResNet(Classifier):
    """WRN-depth-width for 32x32 inputs; features are the 8x8 average of the final activated map."""

    def __init__(self, depth: int, width: int, num_classes: int, dropout: float = 0.3) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.in_planes = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=True)
        self.layer1 = self._make_layer(widths[1], n, dropout, 1)
        self.layer2 = self._make_layer(widths[2], n, dropout, 2)
        self.layer3 = self._make_layer(widths[3], n, dropout, 2)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.feature_dim = widths[3]
        self.num_classes = num_classes
        self.linear = nn.Linear(self.feature_dim, num_classes)

    def _make_layer(self, planes: int, n: int, dropout: float, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(WideBasic(self.in_planes, planes, dropout, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def stage_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.conv1(x)
        m1 = self.layer1(out)
        m2 = self.layer2(m1)
        m3 = F.relu(self.bn1(self.layer3(m2)))
        return [m1, m2, m3]


def wrn40_2(num_classes: int) -> WideResNet:
    return WideResNet(40, 2, num_classes)


def wrn10_2(num_classes: int) -> WideResNet:
    """One block per stage: WRN-40-2's shapes at a sixth of its cost, for the offline demo and tests."""
    return WideResNet(10, 2, num_classes)

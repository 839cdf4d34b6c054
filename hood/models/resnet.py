"""ResNets in the forms the paper uses: ResNet18 for 32x32 CIFAR and ResNet50 for 64x64 Tiny ImageNet.

Module names follow the authors' checkpoints (``conv1, bn1, layer1..4, shortcut.0/1, linear``) so their
weights load without renaming. ``forward_all`` also returns each stage's map: the decoder's ``fw_layers``
skip connections read them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hood.models.base import Classifier


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a 1x1 projection shortcut when the shape changes."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), with a projection shortcut when the shape changes."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes * 4:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(Classifier):
    """CIFAR-form ResNet: 3x3 stem without max-pool (``stem_pool`` adds the 2x2 pool used at 64x64)."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        num_blocks: tuple[int, int, int, int],
        num_classes: int,
        stem_pool: bool = False,
    ) -> None:
        super().__init__()
        self.in_planes = 64
        self.stem_pool = stem_pool
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(block, 64, num_blocks[0], 1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], 2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], 2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], 2)
        self.feature_dim = 512 * block.expansion
        self.num_classes = num_classes
        self.linear = nn.Linear(self.feature_dim, num_classes)

    def _make_layer(self, block: type[nn.Module], planes: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion  # type: ignore[attr-defined]
        return nn.Sequential(*layers)

    def stage_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = F.relu(self.bn1(self.conv1(x)))
        if self.stem_pool:
            out = F.max_pool2d(out, 2)
        maps = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            out = layer(out)
            maps.append(out)
        return maps


def resnet18(num_classes: int) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes)


def resnet50(num_classes: int) -> ResNet:
    """ResNet50 for 64x64 inputs: a 2x2 max-pool after the stem, as the paper's Tiny ImageNet model."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, stem_pool=True)

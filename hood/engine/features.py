"""Running the frozen classifier once per data set (METHOD.md defect 4) and keeping what it produced.

A :class:`FeatureSet` holds penultimate features, logits and, when a decoder needs skip connections,
the deepest stage maps in fp16. Every consumer (decoder training, each detector, visualize) reads the
same FeatureSet instead of re-running the classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hood.data.transforms import normalize
from hood.engine.progress import NullReporter, Reporter
from hood.engine.runtime import MEMORY_FORMAT, autocast
from hood.models.base import Classifier

CPU_BATCH = 128


@dataclass
class FeatureSet:
    features: torch.Tensor  # N x D float32
    logits: torch.Tensor  # N x K float32
    maps: list[torch.Tensor] | None = None  # deepest stage maps, fp16, shallow to deep
    labels: torch.Tensor | None = None

    @property
    def preds(self) -> torch.Tensor:
        return self.logits.argmax(dim=1)

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def take(self, idx: torch.Tensor) -> FeatureSet:
        return FeatureSet(
            self.features[idx],
            self.logits[idx],
            None if self.maps is None else [m[idx] for m in self.maps],
            None if self.labels is None else self.labels[idx],
        )

    def to(self, device: torch.device) -> FeatureSet:
        return FeatureSet(
            self.features.to(device),
            self.logits.to(device),
            None if self.maps is None else [m.to(device) for m in self.maps],
            None if self.labels is None else self.labels.to(device),
        )


def extract_features(
    model: Classifier,
    images: torch.Tensor,
    device: torch.device,
    batch_size: int = 500,
    num_maps: int = 0,
    labels: torch.Tensor | None = None,
    reporter: Reporter | None = None,
    description: str = "features",
) -> FeatureSet:
    """Features, logits and the ``num_maps`` deepest stage maps of uint8 ``images``, on the CPU."""
    reporter = reporter or NullReporter()
    model.eval()
    # NHWC weights to match NHWC batches (see runtime.MEMORY_FORMAT); done outside inference mode, where
    # .to() would turn the weights into inference tensors that no later gradient (ODIN, training) may use
    model.to(memory_format=MEMORY_FORMAT)
    with torch.inference_mode():
        return _extract(model, images, device, batch_size, num_maps, labels, reporter, description)


def _extract(
    model: Classifier, images: torch.Tensor, device: torch.device, batch_size: int, num_maps: int,
    labels: torch.Tensor | None, reporter: Reporter, description: str,
) -> FeatureSet:
    feats, logits, maps = [], [], [[] for _ in range(num_maps)]
    task = reporter.task(description, len(images))
    if device.type == "cpu":
        # CPU convolutions run as fast at 128 images as at 500, and the transient activations of one batch
        # are what sets the peak memory of evaluate (~0.7 GB at 500 for WRN/ResNet at 32x32; ~4x less here)
        batch_size = min(batch_size, CPU_BATCH)
    for start in range(0, len(images), batch_size):
        x = normalize(images[start : start + batch_size].to(device, non_blocking=True))
        x = x.contiguous(memory_format=MEMORY_FORMAT)
        with autocast(device):
            out = model.forward_all(x)
        feats.append(out.features.float().cpu())
        logits.append(out.logits.float().cpu())
        for i, m in enumerate(out.maps[len(out.maps) - num_maps :] if num_maps else []):
            maps[i].append(m.to(torch.float16).contiguous().cpu())
        reporter.advance(task, len(x))
    reporter.done(task)
    if not feats:
        raise ValueError("no images to extract features from")
    return FeatureSet(
        torch.cat(feats),
        torch.cat(logits),
        [torch.cat(m) for m in maps] if num_maps else None,
        labels,
    )

"""Pixel maps (N x H x W, larger = more foreign) that say where an image departs from the ID data.

The decoder's heatmap is one, as drawn and smoothed for localization: the raw channel-max ``|h|`` (no noise
floor, which zeroes most pixels and so ties them) blurred by a Gaussian of :data:`LOCALIZATION_SIGMA` pixels,
since the decoder marks a foreign region with scattered bright pixels rather than a filled one. The others are
references, so that a localization table says whether the decoder adds anything: the input gradient of the
energy score (where a small change would move the OOD score most), the distance to the mean ID image of the
predicted class (the trivial map a prototype gives without training anything), and a centre prior that looks
at no image at all (a pasted region of 10-50% of an image covers its centre more often than its edges, so a
map must beat this one to show that it sees the region).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hood.data.transforms import normalize
from hood.detectors.gradients import MAX_BATCH, differentiable, full_fp32
from hood.detectors.heatmap import HeatmapDetector
from hood.engine.features import FeatureSet
from hood.engine.heatmaps import raw_heatmaps

REFERENCE_MAPS = ("energy-gradient", "class-mean-distance", "centre-prior")
# chosen on validation composites (held-out pool classes, omniglot-val, noise) among 1, 2 and 3 pixels with
# WRN-40-2: 2 and 3 within half a point of pixel AUROC, 2 ahead on AUPRO (research/localization_variants.py)
LOCALIZATION_SIGMA = 2.0


def heatmap_map(detector: HeatmapDetector, feats: FeatureSet) -> torch.Tensor:
    """The channel-max ``|h|`` of the decoder's heatmaps (with its noise floor, as every command draws them)."""
    return detector.heatmaps_of(feats).abs().amax(dim=1)


def smoothed_heatmap_map(detector: HeatmapDetector, feats: FeatureSet, sigma: float = LOCALIZATION_SIGMA) -> torch.Tensor:
    """The raw channel-max ``|h|`` (noise floor off) blurred by a Gaussian of ``sigma`` pixels: where the decoder
    draws densely, not where one pixel happens to be bright."""
    with raw_heatmaps(detector._decoder(), detector.device):
        raw = detector.heatmaps_of(feats).abs().amax(dim=1)
    return gaussian_blur(raw, sigma)


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """``N x H x W`` maps blurred by a separable Gaussian of ``sigma`` pixels (edges replicated)."""
    if sigma <= 0:
        return maps
    r = max(1, round(3 * sigma))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    m = F.pad(maps.float()[:, None], (r, r, 0, 0), mode="replicate")
    m = F.conv2d(m, k.view(1, 1, 1, -1))
    m = F.conv2d(F.pad(m, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return m[:, 0]


def energy_gradient_map(model: nn.Module, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Channel-max ``|d E / d x|`` of the energy score ``E = -logsumexp(logits)`` at each uint8 image, in full fp32."""
    model = differentiable(model.to(device))
    out = []
    with full_fp32():
        for s in range(0, len(images), MAX_BATCH):
            x = normalize(images[s : s + MAX_BATCH].to(device)).requires_grad_(True)
            energy = -torch.logsumexp(model(x), dim=1).sum()  # each row's gradient is its own
            (grad,) = torch.autograd.grad(energy, x)
            out.append(grad.abs().amax(dim=1).float().cpu())
    return torch.cat(out)


def class_mean_images(images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``num_classes x 3 x H x W``: the pixel mean of each class's images in [0, 1] (a class without images: grey)."""
    sums = torch.zeros(num_classes, *images.shape[1:], dtype=torch.float64)
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for s in range(0, len(images), 4096):  # bounds the float copy
        part, y = images[s : s + 4096].double() / 255, labels[s : s + 4096].long()
        sums.index_add_(0, y, part)
        counts.index_add_(0, y, torch.ones(len(y), dtype=torch.float64))
    means = sums / counts.clamp(min=1)[:, None, None, None]
    means[counts == 0] = 0.5
    return means.float()


def class_mean_distance_map(images: torch.Tensor, preds: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Channel-max ``|x - m_yhat|`` per pixel, ``m_yhat`` the mean ID image of the predicted class."""
    return (images.float() / 255 - means[preds.long()]).abs().amax(dim=1)


def centre_prior_map(count: int, height: int, width: int) -> torch.Tensor:
    """``count x height x width``: minus each pixel's distance to the image centre, the same for every image."""
    y = torch.arange(height, dtype=torch.float32) - (height - 1) / 2
    x = torch.arange(width, dtype=torch.float32) - (width - 1) / 2
    return (-torch.hypot(y[:, None], x[None, :])).expand(count, height, width).contiguous()

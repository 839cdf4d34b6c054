"""AdaSCALE-A (Regmi, "AdaSCALE: Adaptive Scaling for OOD Detection", ICML 2026,
https://arxiv.org/abs/2503.08023).

SCALE with a percentile of each sample's own. The input is nudged where the classifier is least sensitive: the
``o`` share of its pixel values with the smallest gradient of the top logit move by the gradient's sign (0.5 in
the authors' normalized input, whose std is about 0.25: 0.125 of the pixel range). ID features move less under
it than OOD ones. With z the penultimate features, z~ those of the nudged image and T_k the indices of z's k
largest activations,

    Q'(x) = sum_{j in T_k1} relu(z~_j) + lmbda * sum_{j in T_k2} |z_j - z~_j|,   k_i = floor(D k_i / 100)
    p(x)  = p_min + (1 - F(Q'(x))) (p_max - p_min)
    s(x)  = -logsumexp( W (exp(s1 / s2) z) + b )      (SCALE's factor at the p(x)-th percentile, as in SCALE)

where F is the empirical CDF of Q' over ``fit_images`` ID images (the fit). Defaults are the authors' CIFAR
settings (OpenOOD v1.5): p_min 75, p_max 85, k1 5 (%), k2 1 (%), lmbda 10, o 0.05, 5,000 fit images. Where
hood departs: the fit images are a seeded class-balanced draw of the ID training set (the authors take the ID validation split,
which hood's protocol keeps for choosing settings), k1 and k2 keep at least one activation, and the gradient
runs in full fp32. Every image costs two forward passes and one backward pass of the classifier.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hood.data.transforms import normalize
from hood.detectors.ash import sharpening
from hood.detectors.base import Detector, as_number, energy
from hood.detectors.gradients import MAX_BATCH, balanced_rows, differentiable, full_fp32
from hood.errors import DetectorParameterError

STEP = 0.125 / 0.5  # the nudge in hood's normalized input (std 0.5): 0.125 of the pixel range


def adaptive_percentiles(q: torch.Tensor, reference: torch.Tensor, p_min: float, p_max: float) -> torch.Tensor:
    """``p_min + (1 - F(q)) (p_max - p_min)``, F the empirical CDF of the sorted ``reference``."""
    ecdf = torch.searchsorted(reference, q.contiguous(), right=True).double() / len(reference)
    return p_min + (1.0 - ecdf) * (p_max - p_min)


def scaled_energy(z: torch.Tensor, percentiles: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """SCALE's score with one percentile per row: the factor counts that row's ``D - round(D p / 100)`` largest
    activations (at least one)."""
    d = z.shape[1]
    keep = (d - torch.round(d * percentiles / 100)).clamp(1, d).long()
    ranks = z.argsort(dim=1, descending=True).argsort(dim=1)
    return energy((z * sharpening(z, ranks < keep[:, None])[:, None]) @ weight.T + bias)


class AdaSCALE(Detector):
    """SCALE at a per-sample percentile set by how far the features move under a small, insensitive nudge."""

    name = "adascale"
    needs_fit = True
    needs_images = True
    needs_final_layer = True

    def __init__(self, model: nn.Module | None = None, *, p_min: float = 75.0, p_max: float = 85.0, k1: float = 5.0,
                 k2: float = 1.0, lmbda: float = 10.0, o: float = 0.05, fit_images: int = 5000, **options: Any) -> None:
        super().__init__(model, **options)
        self.p_min, self.p_max = as_number(self.name, "p_min", p_min), as_number(self.name, "p_max", p_max)
        if not 0 <= self.p_min <= self.p_max < 100:
            raise DetectorParameterError(self.name, "p_min", f"p_min and p_max must satisfy 0 <= p_min <= p_max < 100, got {p_min} and {p_max}")
        self.k1, self.k2 = as_number(self.name, "k1", k1), as_number(self.name, "k2", k2)
        for name, v in (("k1", self.k1), ("k2", self.k2)):
            if not 0 < v <= 100:
                raise DetectorParameterError(self.name, name, f"must be a percentage in (0, 100], got {v}")
        self.lmbda = as_number(self.name, "lmbda", lmbda)
        if self.lmbda < 0:
            raise DetectorParameterError(self.name, "lmbda", f"must be non-negative, got {lmbda}")
        self.o = as_number(self.name, "o", o)
        if not 0 < self.o <= 1:
            raise DetectorParameterError(self.name, "o", f"must be a share of the pixels in (0, 1], got {o}")
        self.fit_images = as_number(self.name, "fit_images", fit_images, integer=True)
        if self.fit_images < 1:
            raise DetectorParameterError(self.name, "fit_images", f"must be a positive integer, got {fit_images}")
        self.reference: torch.Tensor | None = None  # sorted Q' of the fit images

    def _count(self, share: float, d: int) -> int:
        return max(1, int(d * share / 100))

    def shifts(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The features z (float64) of uint8 ``images`` and their Q'."""
        model = differentiable(self.adapter.classifier(images.shape[-1]).to(self.device))
        step = min(self.batch_size, MAX_BATCH)
        feats, qs = [], []
        with full_fp32():
            for s in range(0, len(images), step):
                z, q = self._batch(model, images[s : s + step])
                feats.append(z)
                qs.append(q)
        return torch.cat(feats), torch.cat(qs)

    def _batch(self, model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = normalize(images.to(self.device)).requires_grad_(True)
        out = model.forward_all(x)
        top = out.logits.float().amax(dim=1)
        (grad,) = torch.autograd.grad(top.sum(), x)
        flat = grad.abs().flatten(1)
        quiet = flat.topk(int(flat.shape[1] * self.o), dim=1, largest=False).indices  # the least sensitive values
        mask = torch.zeros_like(flat).scatter_(1, quiet, 1.0).view_as(grad)
        with torch.no_grad():
            nudged = model.forward_all(x.detach() + grad.sign() * mask * STEP).features.double().cpu()
        z = out.features.detach().double().cpu()
        d = z.shape[1]
        t1 = z.topk(self._count(self.k1, d), dim=1).indices
        t2 = z.topk(self._count(self.k2, d), dim=1).indices
        q = nudged.clamp_min(0).gather(1, t1).sum(dim=1) + self.lmbda * (z - nudged).abs().gather(1, t2).sum(dim=1)
        return z, q

    def fit_on_images(self, images: torch.Tensor, labels: torch.Tensor | None) -> None:
        _, q = self.shifts(images[balanced_rows(len(images), labels, self.fit_images)])
        self.reference = q.sort().values

    def score_images(self, images: torch.Tensor) -> np.ndarray:
        if self.reference is None:
            raise ValueError("adascale is not fitted")
        z, q = self.shifts(images)
        return scaled_energy(z, adaptive_percentiles(q, self.reference, self.p_min, self.p_max), self.weight, self.bias).numpy()

    def state(self) -> dict[str, Any]:
        return {"reference": self.reference}

    def load_state(self, state: dict[str, Any]) -> None:
        self.reference = state["reference"].double().sort().values

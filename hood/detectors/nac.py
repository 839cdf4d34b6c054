"""NAC-UE, neuron activation coverage (Liu, Xu, Zhou, Wang, Zhu, Yang, "Neuron Activation Coverage: Rethinking
Out-of-distribution Detection and Generalization", ICLR 2024, https://arxiv.org/abs/2306.02879).

A neuron's state weighs its output by how much it moves the prediction away from uniform: with ``u`` the
uniform distribution over the K classes and ``z`` a layer's output (summed over the map's positions for a
stage map, as the authors pool it),

    z^ = sigmoid( alpha * z * dKL(u || softmax(f(x))) / dz )      in [0, 1], per neuron

On a class-balanced draw of ``fit_images`` ID training images each neuron's states fill a histogram of ``m``
bins (the authors' bins: finest about 0.5); a bin visited ``o`` times or more is fully covered.
An image's coverage is the mean over neurons of the coverage of the bin its state falls in, averaged over the
layers, and the OOD score is its negative:

    Phi(bin) = min(count(bin) / o, 1),   s(x) = -mean_layers mean_neurons Phi(bin of z^_i(x))

Layers: the pooled penultimate features, then the classifier's stage maps from deep to shallow (for ResNet18:
avgpool, layer3, layer2, layer1), ``alpha``, ``m`` and ``o`` giving one value per layer in that order. The
defaults are the authors' CIFAR-10 ResNet18 settings (OpenOOD v1.5): alpha (100, 1000, 0.001, 0.001),
m (50, 500, 50, 500), o (50, 100, 5, 100), 1,000 fit images (100 per class). A classifier with fewer stages
(WRN-40-2 has three: pooled features, block2, block1) uses the first values. Where hood departs: the fit draw is
seeded (:data:`~hood.detectors.gradients.FIT_SEED`) rather than the authors' per-class shuffle, and the
gradients run in full fp32. Every image costs one forward and one backward pass of the classifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from hood.data.transforms import normalize
from hood.detectors.base import Detector, as_number
from hood.detectors.gradients import MAX_BATCH, balanced_rows, differentiable, full_fp32
from hood.errors import DetectorParameterError


def bin_edges(m: int) -> torch.Tensor:
    """The authors' ``m`` histogram edges on [0, 1.2): the logarithms of evenly spaced numbers from 0 up to 0.5,
    mirrored up to 1, so the bins are finest about 0.5, where a state is neither off nor saturated (``m // 2 * 2``
    edges, one bin fewer)."""
    half = m // 2
    left = np.log(np.linspace(1.0, np.sqrt(1000.0), half)) / np.log(1000.0)  # 0 .. 0.5
    edges = np.concatenate([left[:-1], (1.0 - left)[::-1]])
    edges[-1] += 0.01
    return torch.from_numpy(np.append(edges, 1.2))


def bin_of(states: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """The bin ``edges[i] <= s < edges[i + 1]`` of every state."""
    return (torch.searchsorted(edges, states.contiguous(), right=True) - 1).clamp(0, len(edges) - 2)


def _per_layer(name: str, values: Any, integer: bool = False) -> list[Any]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise DetectorParameterError("nac", name, f"must be a list of one value per layer, got {values!r}")
    out = [as_number("nac", name, v, integer) for v in values]
    if any(v <= 0 for v in out):
        raise DetectorParameterError("nac", name, f"must be positive, got {list(values)}")
    return out


class NAC(Detector):
    """Coverage of each neuron's state by the states ID training images gave it, over the classifier's layers."""

    name = "nac"
    needs_fit = True
    needs_images = True

    def __init__(self, model: nn.Module | None = None, *, alpha: Sequence[float] = (100.0, 1000.0, 0.001, 0.001),
                 m: Sequence[int] = (50, 500, 50, 500), o: Sequence[float] = (50, 100, 5, 100), fit_images: int = 1000,
                 **options: Any) -> None:
        super().__init__(model, **options)
        if model is None:
            raise ValueError("NAC differentiates through the model; pass it: hood.NAC(model)")
        self.alpha = _per_layer("alpha", alpha)
        self.m = _per_layer("m", m, integer=True)
        self.o = _per_layer("o", o)
        if not len(self.alpha) == len(self.m) == len(self.o):
            raise DetectorParameterError(self.name, "alpha", f"alpha, m and o need one value per layer each; got {len(self.alpha)}, "
                                         f"{len(self.m)} and {len(self.o)} values")
        if min(self.m) < 4:
            raise DetectorParameterError(self.name, "m", f"needs at least 4 bins per layer, got {self.m}")
        self.fit_images = as_number(self.name, "fit_images", fit_images, integer=True)
        if self.fit_images < 1:
            raise DetectorParameterError(self.name, "fit_images", f"must be a positive integer, got {fit_images}")
        self.edges = [bin_edges(v) for v in self.m]
        self.counts: list[torch.Tensor] | None = None  # per layer, neurons x bins: the fit images' states

    def states(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's neuron states z^ of uint8 ``images`` (n x neurons, float64, in [0, 1])."""
        model = differentiable(self.adapter.classifier(images.shape[-1]).to(self.device))
        step = min(self.batch_size, MAX_BATCH)
        parts: list[list[torch.Tensor]] = []
        with full_fp32():
            for s in range(0, len(images), step):
                parts.append(self._batch_states(model, images[s : s + step]))
        return [torch.cat([p[i] for p in parts]) for i in range(len(parts[0]))] if parts else []

    def _batch_states(self, model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
        out = model.forward_all(normalize(images.to(self.device)))
        layers = [out.features, *out.maps[-2::-1]][: len(self.alpha)]
        # cross-entropy to the uniform distribution: KL(u || p) up to a constant, so the same gradient; each
        # row's gradient is its own image's (eval mode), so the batch sums its rows' losses
        loss = -torch.log_softmax(out.logits.float(), dim=1).mean(dim=1).sum()
        grads = torch.autograd.grad(loss, layers)
        states = []
        for alpha, z, g in zip(self.alpha, layers, grads, strict=False):  # a shallower model: its first values
            if z.ndim == 4:  # a stage map: the authors sum output and gradient over its positions, then multiply
                z, g = z.sum(dim=(2, 3)), g.sum(dim=(2, 3))
            states.append(torch.sigmoid(alpha * (z.detach().double() * g.double())).cpu())
        return states

    def fit_on_images(self, images: torch.Tensor, labels: torch.Tensor | None) -> None:
        rows = balanced_rows(len(images), labels, self.fit_images)
        states = self.states(images[rows])
        self.counts = []
        for edges, s in zip(self.edges, states, strict=False):
            bins = len(edges) - 1
            flat = bin_of(s, edges) + torch.arange(s.shape[1]) * bins  # one histogram per neuron
            self.counts.append(torch.bincount(flat.flatten(), minlength=s.shape[1] * bins).reshape(s.shape[1], bins))

    def score_images(self, images: torch.Tensor) -> np.ndarray:
        if self.counts is None:
            raise ValueError("nac is not fitted")
        coverage = []
        for edges, o, counts, s in zip(self.edges, self.o, self.counts, self.states(images), strict=False):
            if s.shape[1] != counts.shape[0]:
                raise ValueError(f"nac was fitted on a layer of {counts.shape[0]} neurons, this model's has {s.shape[1]}")
            phi = (counts.double() / o).clamp(max=1.0)
            coverage.append(phi.gather(1, bin_of(s, edges).T).T.mean(dim=1))
        return (-torch.stack(coverage).mean(dim=0)).numpy()

    def state(self) -> dict[str, Any]:
        return {"counts": self.counts}

    def load_state(self, state: dict[str, Any]) -> None:
        counts = state["counts"]
        if not isinstance(counts, list) or not all(isinstance(c, torch.Tensor) and c.ndim == 2 for c in counts):
            raise ValueError("nac's fit holds no per-layer histograms")
        self.counts = [c.long() for c in counts]

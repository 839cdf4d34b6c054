"""ODIN (Liang, Li, Srikant, "Enhancing the Reliability of Out-of-distribution Image Detection in Neural
Networks", ICLR 2018, https://arxiv.org/abs/1706.02690).

Temperature scaling plus a small input perturbation that raises the softmax score, which helps ID
images more than OOD ones:

    x~ = x - eps * sign(-grad_x log S_yhat(x; T)),   S(x; T) = softmax(f(x) / T)
    s(x) = -max_k S_k(x~; T)

``epsilon`` is in [0, 1] pixel units; the inputs are normalized with std 0.5, so the step in the network's
input space is ``epsilon / 0.5`` (the authors divide the gradient by the std the same way). Defaults are the
paper's T = 1000 and eps = 0.0014. The perturbation is far below bf16 resolution, so ODIN runs in full fp32
(no autocast, no TF32).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hood.data.transforms import normalize
from hood.detectors.base import Detector, as_number
from hood.detectors.gradients import MAX_BATCH, differentiable, full_fp32
from hood.errors import DetectorParameterError

_STD = 0.5  # hood's input normalization: (x/255 - 0.5) / 0.5


class ODIN(Detector):
    """Softmax at ``temperature`` of the input perturbed by ``epsilon`` towards a more confident prediction."""

    name = "odin"
    needs_images = True

    def __init__(self, model: nn.Module | None = None, *, temperature: float = 1000.0, epsilon: float = 0.0014,
                 **options: Any) -> None:
        super().__init__(model, **options)
        if model is None:
            raise ValueError("ODIN perturbs the input images through the model; pass it: hood.ODIN(model)")
        self.temperature = as_number(self.name, "temperature", temperature)
        self.epsilon = as_number(self.name, "epsilon", epsilon)
        if self.temperature <= 0:
            raise DetectorParameterError(self.name, "temperature", f"must be positive, got {temperature}")
        if self.epsilon < 0:
            raise DetectorParameterError(self.name, "epsilon", f"must be non-negative, got {epsilon}")

    def _batch(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        x = normalize(images.to(self.device)).requires_grad_(True)
        log_s = torch.log_softmax(model(x) / self.temperature, dim=1)
        loss = -log_s.max(dim=1).values.sum()  # -log S_yhat; the gradient of each row is its own
        (grad,) = torch.autograd.grad(loss, x)
        x_tilde = x.detach() - (self.epsilon / _STD) * grad.sign()
        with torch.no_grad():
            s = torch.softmax(model(x_tilde) / self.temperature, dim=1).amax(dim=1)
        return -s.double().cpu()

    def score_images(self, images: torch.Tensor) -> np.ndarray:
        model = differentiable(self.adapter.classifier(images.shape[-1]).to(self.device))
        step = min(self.batch_size, MAX_BATCH)
        with full_fp32():
            out = [self._batch(model, images[s : s + step]) for s in range(0, len(images), step)]
        return torch.cat(out).numpy()

"""ODIN (Liang, Li, Srikant, "Enhancing the Reliability of Out-of-distribution Image Detection in Neural
Networks", ICLR 2018).

Temperature scaling plus a small input perturbation that raises the softmax score, which helps ID
images more than OOD ones:

    x~ = x - eps * sign(-grad_x log S_yhat(x; T)),   S(x; T) = softmax(f(x) / T)
    s(x) = -max_k S_k(x~; T)

``eps`` is in [0, 1] pixel units; the inputs are normalized with std 0.5, so the step in the network's
input space is ``eps / 0.5`` (the authors divide the gradient by the std the same way). Defaults are the
paper's T = 1000 and eps = 0.0014 (``evaluate.odin_temperature`` / ``evaluate.odin_epsilon``).

The perturbation is far below bf16 resolution, so ODIN runs in full fp32 (no autocast, no TF32).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from hood.data.transforms import normalize
from hood.detectors.base import Detector, DetectorContext, register
from hood.engine.features import FeatureSet
from hood.errors import DetectorParameterError

_STD = 0.5  # hood's input normalization: (x/255 - 0.5) / 0.5


@contextlib.contextmanager
def _full_fp32() -> Iterator[None]:
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class ODINDetector(Detector):
    name = "odin"
    needs_images = True

    def __init__(self, classifier: torch.nn.Module, device: torch.device, temperature: float = 1000.0,
                 epsilon: float = 0.0014, batch_size: int = 250) -> None:
        if temperature <= 0:
            raise DetectorParameterError(self.name, "temperature", f"must be positive, got {temperature}")
        if epsilon < 0:
            raise DetectorParameterError(self.name, "epsilon", f"must be non-negative, got {epsilon}")
        self.classifier = classifier
        self.device = device
        self.temperature = float(temperature)
        self.epsilon = float(epsilon)
        self.batch_size = batch_size

    def score_params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "epsilon": self.epsilon}

    def score(self, feats: FeatureSet) -> np.ndarray:
        raise NotImplementedError("ODIN perturbs the input images; call score_images")

    def _batch(self, images: torch.Tensor) -> torch.Tensor:
        x = normalize(images.to(self.device)).requires_grad_(True)
        log_s = torch.log_softmax(self.classifier(x) / self.temperature, dim=1)
        loss = -log_s.max(dim=1).values.sum()  # -log S_yhat; the gradient of each row is its own
        (grad,) = torch.autograd.grad(loss, x)
        x_tilde = x.detach() - (self.epsilon / _STD) * grad.sign()
        with torch.no_grad():
            s = torch.softmax(self.classifier(x_tilde) / self.temperature, dim=1).amax(dim=1)
        return -s.double().cpu()

    def _differentiable(self) -> None:
        """Weights touched under ``torch.inference_mode`` (e.g. a memory-format change while extracting
        features) become inference tensors, which autograd refuses; a deep copy gives normal ones."""
        model = self.classifier
        if any(t.is_inference() for t in itertools.chain(model.parameters(), model.buffers())):
            self.classifier = copy.deepcopy(model)

    def score_images(self, images: torch.Tensor) -> np.ndarray:
        self._differentiable()
        self.classifier.eval()
        out = []
        with torch.inference_mode(False), torch.enable_grad(), _full_fp32():
            for start in range(0, len(images), self.batch_size):
                out.append(self._batch(images[start : start + self.batch_size]))
        return torch.cat(out).numpy()


@register("odin", options={"temperature": "odin_temperature", "epsilon": "odin_epsilon"})
def _build(ctx: DetectorContext) -> Detector:
    return ODINDetector(
        ctx.classifier, ctx.device, ctx.param("odin_temperature"), ctx.param("odin_epsilon"),
        min(int(ctx.param("batch_size")), 250),
    )

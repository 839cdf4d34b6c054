"""What the detectors that differentiate through the classifier share (ODIN, NAC, AdaSCALE): full fp32, weights
autograd accepts, gradient passes of bounded size, and the seeded class-balanced draw of images they fit on."""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Iterator

import torch
from torch import nn

from hood.engine.runtime import seeded_indices

MAX_BATCH = 250  # images per gradient pass: the backward holds every activation of the batch
FIT_SEED = 0  # the draw of fit images: fixed, so a fit is the same on every run of the same data


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """No TF32 while a gradient is taken: perturbations and activation products sit below its resolution."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def differentiable(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with weights autograd accepts. Weights touched under ``torch.inference_mode`` (a
    memory-format change while extracting features) become inference tensors, which autograd refuses; a deep
    copy gives normal ones."""
    if any(t.is_inference() for t in itertools.chain(model.parameters(), model.buffers())):
        model = copy.deepcopy(model)
    return model.eval()


def balanced_rows(n: int, labels: torch.Tensor | None, count: int) -> torch.Tensor:
    """Sorted rows of a seeded draw of ``count`` of ``n`` images: as many of each class as the rarest allows up
    to ``count // classes`` (the NAC authors' rule) when ``labels`` are given, else a plain seeded draw."""
    if labels is None or count >= n:
        return seeded_indices(n, count, FIT_SEED)
    labels = labels.reshape(-1).long()
    classes, counts = torch.unique(labels, return_counts=True)
    per_class = max(1, min(count // len(classes), int(counts.min())))
    rows = [idx[seeded_indices(len(idx), per_class, FIT_SEED + int(c))] for c in classes
            for idx in [torch.nonzero(labels == c).flatten()]]
    return torch.cat(rows).sort().values

"""Batch transforms done on the device, on whole uint8 batches (no per-image Python work).

Normalization is the paper's ``(x/255 - 0.5)/0.5``. Training augmentation is random crop with 4 pixels
of zero padding plus horizontal flip, the classifier recipe of METHOD.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``N x 3 x H x W`` to float in [-1, 1]."""
    return images.float().div_(127.5).sub_(1.0)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize`, to float in [0, 1] for pictures."""
    return x.add(1.0).div(2.0).clamp(0.0, 1.0)


def random_crop_flip(x: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample random crop (zero padding ``pad``) and horizontal flip, for a normalized batch."""
    n, _, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device="cpu").to(dev)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device="cpu").to(dev)
    rows = (dy[:, None] + torch.arange(h, device=dev)[None])  # n x h
    cols = (dx[:, None] + torch.arange(w, device=dev)[None])  # n x w
    flip = torch.rand(n, generator=generator, device="cpu").to(dev) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    idx_r = rows[:, None, :, None].expand(n, x.shape[1], h, w + 2 * pad)
    out = padded.gather(2, idx_r)
    idx_c = cols[:, None, None, :].expand(n, x.shape[1], h, w)
    return out.gather(3, idx_c)

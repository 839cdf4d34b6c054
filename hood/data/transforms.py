"""Batch transforms done on the device, on whole uint8 batches (no per-image Python work).

Normalization is the paper's ``(x/255 - 0.5)/0.5``. Training augmentation is random crop with 4 pixels
of zero padding plus horizontal flip, the paper's classifier recipe.
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


def crop_flip_params(n: int, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n x 3`` int64 on the CPU: per sample the crop offsets (dy, dx in ``[0, 2 pad]``) and a flip flag.

    Drawn on the CPU from ``generator`` so a seed gives the same augmentation on every device. Training
    draws a whole epoch's at once and moves them to the device in one copy: a copy per step would make
    the host wait for the GPU every step (PyTorch synchronises on host-to-device copies).
    """
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device="cpu")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device="cpu")
    flip = torch.rand(n, generator=generator, device="cpu") < 0.5
    return torch.stack([dy, dx, flip.long()], dim=1)


def crop_flip(x: torch.Tensor, params: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Crop (zero padding ``pad``) and flip a normalized batch as ``params`` (from :func:`crop_flip_params`,
    on ``x``'s device) say; gathers only, no host work."""
    n, _, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = params[:, 0:1] + torch.arange(h, device=dev)[None]  # n x h
    cols = params[:, 1:2] + torch.arange(w, device=dev)[None]  # n x w
    cols = torch.where(params[:, 2:3].bool(), cols.flip(1), cols)
    idx_r = rows[:, None, :, None].expand(n, x.shape[1], h, w + 2 * pad)
    out = padded.gather(2, idx_r)
    idx_c = cols[:, None, None, :].expand(n, x.shape[1], h, w)
    return out.gather(3, idx_c)


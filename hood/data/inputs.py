"""What the Python API accepts as images: a DataLoader, a tensor batch, a NumPy array, PIL images or image
files, turned into the uint8 ``N x 3 x H x W`` batches the engine works on, one batch at a time (a DataLoader
is never held whole when scoring)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

CHUNK = 256  # images per batch when a tensor or array is given whole


def to_uint8(x: Any) -> torch.Tensor:
    """One batch as uint8 ``N x 3 x H x W``: uint8 as it is, floats in [0, 1] scaled to 0..255, grey
    images repeated to three channels, NumPy HWC arrays moved to CHW."""
    if isinstance(x, np.ndarray):
        if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            x = x.transpose(0, 3, 1, 2)  # N x H x W x C (PIL, OpenCV) -> N x C x H x W
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected images as a tensor, a NumPy array or a DataLoader of them, got a {type(x).__name__}")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images shaped N x 3 x H x W (or N x 1 x H x W), got shape {tuple(x.shape)}")
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"expected square images, got {x.shape[-2]}x{x.shape[-1]}; crop or resize them to a square size such as 32, 64, 96 or 224")
    x = x.detach().cpu()
    if x.dtype != torch.uint8:
        if not x.is_floating_point():
            raise TypeError(f"expected uint8 or floating-point images, got {x.dtype}")
        if bool(x.isnan().any()):  # NaN would become 0, a black pixel, without a word
            raise ValueError(f"the images hold {int(x.isnan().sum()):,} NaN values; replace them (torch.nan_to_num) or drop those images")
        lo, hi = (float(x.min()), float(x.max())) if x.numel() else (0.0, 1.0)
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(
                f"expected float images in [0, 1] (values span {lo:.3g} to {hi:.3g}): give the images before "
                f"normalization (transforms.ToTensor() without Normalize) and pass the model's normalization as mean= and std="
            )
        x = x.float().mul(255).round_().clamp_(0, 255).to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.contiguous()


def _images_of(item: Any, labels: list[torch.Tensor] | None = None) -> Any:
    """The images of one DataLoader item: the item itself, or the first entry of an (images, labels) pair,
    whose labels are appended to ``labels`` when given."""
    if isinstance(item, (tuple, list)) and item:
        if labels is not None and len(item) > 1:
            labels.append(torch.as_tensor(item[1]).reshape(-1))
        return item[0]
    if isinstance(item, dict):
        for key in ("image", "images", "pixel_values", "x"):
            if key in item:
                return item[key]
        raise TypeError(f"a DataLoader of dicts must hold the images under 'image' or 'pixel_values', got keys {sorted(item)}")
    return item


def is_arrays(x: Any) -> bool:
    """Whether ``x`` is a ``(features, logits)`` pair of 2-d arrays rather than images."""
    return (isinstance(x, tuple) and len(x) == 2 and all(isinstance(a, (np.ndarray, torch.Tensor)) for a in x)
            and all(a.ndim == 2 for a in x))


def batches(x: Any, chunk: int = CHUNK, labels: list[torch.Tensor] | None = None, size: int | None = None) -> Iterator[torch.Tensor]:
    """uint8 batches of ``x``: the batches of a DataLoader (or any iterable of batches), ``chunk``-image slices of
    a tensor or array, or PIL images and image files (decoded at ``size``, see :func:`hood.data.files.load_images`);
    a DataLoader's labels are appended to ``labels`` when given."""
    from hood.data.files import is_file_input, load_images, square_size

    if is_file_input(x):
        listed = list(x) if isinstance(x, (list, tuple)) else [x]
        size = square_size(listed) if size is None else size
        for s in range(0, len(listed), chunk):
            yield load_images(listed[s : s + chunk], size)
        return
    if isinstance(x, (torch.Tensor, np.ndarray)):
        images = to_uint8(x)
        for s in range(0, len(images), chunk):
            yield images[s : s + chunk]
        return
    if is_arrays(x):
        raise TypeError("this needs images, not (features, logits) arrays")
    if isinstance(x, (str, bytes)) or not isinstance(x, Iterable):
        raise TypeError(f"expected images as a tensor, a NumPy array, a DataLoader of them, PIL images or image files, "
                        f"got a {type(x).__name__}")
    size = None
    for item in x:
        batch = to_uint8(_images_of(item, labels))
        if size is not None and batch.shape[-1] != size:
            raise ValueError(f"the images change size from {size} to {batch.shape[-1]} pixels; resize them all to one size")
        size = batch.shape[-1]
        yield batch


def collect(x: Any, what: str) -> torch.Tensor:
    """All images of ``x`` as one uint8 tensor (training needs them all at once, as ``train-decoder`` does)."""
    parts = list(batches(x))
    if not parts or sum(len(p) for p in parts) == 0:
        raise ValueError(f"the {what} holds no images")
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def arrays(x: tuple[Any, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, logits)`` as float32 tensors, checked to have one row per sample each."""
    feats, logits = (torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).detach().cpu().float() for a in x)
    if len(feats) != len(logits):
        raise ValueError(f"features and logits must have one row per sample each, got {len(feats)} and {len(logits)} rows")
    return feats, logits

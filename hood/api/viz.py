"""Pictures of heatmaps for notebooks: one image with its heatmap laid over it."""

from __future__ import annotations

import torch
from PIL import Image

from hood.data.inputs import to_uint8
from hood.viz import overlay_image


def overlay(image: torch.Tensor, heatmap: torch.Tensor, scale: int = 4) -> Image.Image:
    """``image`` (3 x H x W, uint8 or floats in [0, 1]) with the magnitude of ``heatmap`` (3 x H x W, from
    ``heatmaps()``) over it, upscaled ``scale`` times: a PIL image, shown inline by Jupyter."""
    if heatmap.ndim != 3 or image.shape[-2:] != heatmap.shape[-2:]:
        raise ValueError(f"expected one image and its heatmap of the same size, got shapes {tuple(image.shape)} and {tuple(heatmap.shape)}")
    return overlay_image(to_uint8(image)[0], heatmap.detach().float().cpu(), scale)

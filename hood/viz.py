"""Pictures of heatmaps: for each image its input, its heatmap and the heatmap over the input.

Heatmaps use a perceptual colormap (inferno), the magnitude ``max_c |h|`` on a fixed [0, 1] scale (the
decoder's tanh range), so grids of different sets are comparable. Images are upscaled with nearest
neighbour so 32x32 inputs stay legible.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


def _colormap(name: str = "inferno") -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def heat_magnitude(h: torch.Tensor) -> torch.Tensor:
    """``N x 3 x H x W`` heatmaps to ``N x H x W`` magnitudes in [0, 1]."""
    return h.abs().amax(dim=1).clamp(0, 1)


def colorize(mag: np.ndarray, cmap: np.ndarray) -> np.ndarray:
    return cmap[(mag * 255).round().astype(np.uint8)]


def overlay(image: np.ndarray, mag: np.ndarray, cmap: np.ndarray) -> np.ndarray:
    """Blend the colored heatmap over a greyed input, opacity following the magnitude."""
    grey = image.mean(axis=2, keepdims=True).repeat(3, axis=2) * 0.6
    alpha = np.clip(mag * 1.5, 0, 1)[..., None]
    return (grey * (1 - alpha) + colorize(mag, cmap) * alpha).astype(np.uint8)


def heatmap_grid(
    images: torch.Tensor, heatmaps: torch.Tensor, scores: np.ndarray, title: str, scale: int = 4
) -> Image.Image:
    """One column per image: input / heatmap / overlay, the score under it, the title on top."""
    cmap = _colormap()
    n, _, h, w = images.shape
    tile_w, tile_h = w * scale, h * scale
    pad, text_h, title_h = 6, 16, 22
    width = n * (tile_w + pad) + pad
    height = title_h + 3 * (tile_h + pad) + text_h + pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text((pad, 4), title, fill=(0, 0, 0), font=font)
    mags = heat_magnitude(heatmaps).numpy()
    for i in range(n):
        img = images[i].permute(1, 2, 0).numpy()
        rows = [img, colorize(mags[i], cmap), overlay(img.astype(np.float32), mags[i], cmap)]
        x = pad + i * (tile_w + pad)
        for r, arr in enumerate(rows):
            tile = Image.fromarray(arr).resize((tile_w, tile_h), Image.NEAREST)
            canvas.paste(tile, (x, title_h + r * (tile_h + pad)))
        draw.text((x, title_h + 3 * (tile_h + pad)), f"{scores[i]:.4f}", fill=(0, 0, 0), font=font)
    return canvas

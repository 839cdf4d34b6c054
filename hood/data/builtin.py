"""Data sets that ship inside the installed packages, so the demo and the tests need no download.

- ``demo-digits``: scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels), upscaled to 32x32 RGB;
  a seeded 80/20 train/test split. The ID set of ``hood demo``.
- ``demo-china``: random 32x32 crops of scikit-learn's ``china.jpg`` (the demo's auxiliary outliers).
- ``demo-flower``: random 32x32 crops of ``flower.jpg`` (an OOD test set the decoder never sees).
- ``uniform-noise`` / ``gaussian-noise`` / ``blobs``: seeded synthetic images, OOD sets for any ID set
  (blobs: Outlier Exposure's amorphous bright shapes on black, a far-OOD set with structure, unlike noise).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hood.data.images import ImageSet, hwc_to_chw

NOISE_COUNT = 2000
NOISE_SEED = 20231
VAL_NOISE_SEED = NOISE_SEED + 1  # `evaluate --validation`'s noise: another draw, never the test set's images


def demo_digits(size: int = 32, seed: int = 0) -> dict[str, ImageSet]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]  # N x 1 x 8 x 8 in [0, 1]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    images = (x * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    labels = torch.from_numpy(d.target.astype(np.int64))
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    n_train = int(0.8 * len(images))
    classes = [str(i) for i in range(10)]
    full = ImageSet("demo-digits", images, labels, classes, [f"digit_{i:04d}" for i in range(len(images))])
    return {
        "train": full.subset(perm[:n_train], "demo-digits"),
        "test": full.subset(perm[n_train:], "demo-digits"),
    }


def photo_crops(photo: str, count: int, size: int = 32, seed: int = 0) -> ImageSet:
    """Random crops of one of scikit-learn's sample photos, at scales from 1/8 to 1/2 of its height."""
    from sklearn.datasets import load_sample_image

    img = torch.from_numpy(load_sample_image(photo).copy()).permute(2, 0, 1).float()[None]  # 1 x 3 x H x W
    g = torch.Generator().manual_seed(seed)
    h, w = img.shape[-2:]
    crops = []
    for _ in range(count):
        side = int(torch.randint(h // 8, h // 2, (1,), generator=g))
        top = int(torch.randint(0, h - side + 1, (1,), generator=g))
        left = int(torch.randint(0, w - side + 1, (1,), generator=g))
        patch = img[..., top : top + side, left : left + side]
        crops.append(F.interpolate(patch, size=(size, size), mode="area"))
    images = torch.cat(crops).round().clamp(0, 255).to(torch.uint8)
    name = f"demo-{photo.split('.')[0]}"
    return ImageSet(name, images, names=[f"{name}_{i:05d}" for i in range(count)])


SYNTHETIC_NAMES = ("uniform-noise", "gaussian-noise", "blobs")


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of N x C x H x W over all three of C, H, W (edges repeated), as scikit-image's
    ``gaussian(image, sigma, multichannel=False)`` does to the HWC images of Outlier Exposure's recipe."""
    radius = int(4 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    for dim in (1, 2, 3):
        x = x.movedim(dim, -1)
        shape = x.shape
        flat = F.pad(x.reshape(-1, 1, shape[-1]), (radius, radius), mode="replicate")
        x = F.conv1d(flat, k.view(1, 1, -1)).reshape(shape).movedim(-1, dim)
    return x


def synthetic_set(name: str, count: int = NOISE_COUNT, size: int = 32, seed: int = NOISE_SEED, suffix: str = "") -> ImageSet:
    """A seeded synthetic OOD set; ``suffix`` names a draw other than the test set's (``-val``).

    - ``uniform-noise``: every pixel uniform over [0, 255];
    - ``gaussian-noise``: around mid-grey, std 64, clipped;
    - ``blobs``: Hendrycks et al.'s (Outlier Exposure, ICLR 2019) "Blobs": Bernoulli(0.7) pixels, blurred
      (sigma 1.5), everything under 0.75 set to black, so bright amorphous shapes with definite edges on a
      black ground -- a far-OOD set that is not noise (as a validation set it stands in for the far-OOD
      structure that held-out natural-image classes and noise lack)."""
    g = torch.Generator().manual_seed(seed)
    if name == "uniform-noise":
        images = torch.randint(0, 256, (count, 3, size, size), generator=g, dtype=torch.uint8)
    elif name == "gaussian-noise":
        images = (torch.randn(count, 3, size, size, generator=g) * 64 + 127.5).round().clamp(0, 255).to(torch.uint8)
    elif name == "blobs":
        x = _blur(torch.bernoulli(torch.full((count, 3, size, size), 0.7), generator=g), sigma=1.5)
        images = (torch.where(x < 0.75, 0.0, x) * 255).round().clamp(0, 255).to(torch.uint8)
    else:
        raise ValueError(f"no synthetic set called {name!r}; one of {', '.join(SYNTHETIC_NAMES)}")
    full = f"{name}{suffix}"
    return ImageSet(full, images, names=[f"{full}_{i:05d}" for i in range(count)])


def load_builtin(name: str, size: int, split: str | None = None) -> ImageSet | dict[str, ImageSet] | None:
    """The built-in set called ``name`` (a dict of splits for ID sets), or None if there is none."""
    if name == "demo-digits":
        return demo_digits(size)
    if name == "demo-china":
        return photo_crops("china.jpg", 4000, size, seed=1)
    if name == "demo-flower":
        return photo_crops("flower.jpg", 1000, size, seed=2)
    if name in SYNTHETIC_NAMES:
        return synthetic_set(name, size=size)
    return None


BUILTIN_NAMES = ("demo-digits", "demo-china", "demo-flower", *SYNTHETIC_NAMES)
__all__ = ["VAL_NOISE_SEED", "BUILTIN_NAMES", "SYNTHETIC_NAMES", "load_builtin", "synthetic_set", "photo_crops", "demo_digits", "hwc_to_chw"]

"""Composite images for measuring where a heatmap points: an ID image with one region pasted from another image.

The pasted region is the ground truth of "where the image is foreign", so a heatmap can be scored pixel by
pixel (``hood evaluate --localization``) and a decoder can be trained to draw the change inside it alone. Each
composite holds one region, a rectangle or an irregular blob covering a seeded share of the image
(:data:`AREA` by default), drawn from a generator of its own so that the same seed gives the same
composites on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

AREA = (0.1, 0.5)  # share of the image a pasted region covers: large enough to see, small enough to stay an ID image
SHAPES = ("rectangle", "blob")
_BLOB_GRID = 5  # the irregular shape's noise is this coarse before it is smoothed up to the image size


@dataclass
class Composites:
    """``images[i]`` is ``id_images[id_rows[i]]`` with ``masks[i]`` taken from ``ood_images[ood_rows[i]]``."""

    images: torch.Tensor  # N x 3 x H x W uint8
    masks: torch.Tensor  # N x H x W bool: True where the pixel was pasted
    id_rows: torch.Tensor
    ood_rows: torch.Tensor
    shapes: list[str]

    def __len__(self) -> int:
        return len(self.images)


def region_masks(count: int, size: int, generator: torch.Generator, area: tuple[float, float] = AREA) -> tuple[torch.Tensor, list[str]]:
    """``count`` masks of ``size`` x ``size``, alternating rectangles and blobs, each covering a share of the
    image drawn uniformly from ``area``."""
    lo, hi = area
    if not 0 < lo <= hi < 1:
        raise ValueError(f"a pasted region covers a share of the image in (0, 1); got {area}")
    masks = torch.zeros(count, size, size, dtype=torch.bool)
    shapes = []
    for i in range(count):
        share = lo + (hi - lo) * float(torch.rand((), generator=generator))
        shape = SHAPES[i % len(SHAPES)]
        masks[i] = _rectangle(size, share, generator) if shape == "rectangle" else _blob(size, share, generator)
        shapes.append(shape)
    return masks, shapes


def _rectangle(size: int, share: float, g: torch.Generator) -> torch.Tensor:
    """An axis-aligned rectangle of about ``share`` of the image, aspect ratio between 1:2 and 2:1, anywhere."""
    aspect = math.exp((float(torch.rand((), generator=g)) * 2 - 1) * math.log(2))
    h = max(1, min(size, round(math.sqrt(share * size * size / aspect))))
    w = max(1, min(size, round(share * size * size / h)))
    top = int(torch.randint(0, size - h + 1, (), generator=g))
    left = int(torch.randint(0, size - w + 1, (), generator=g))
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[top : top + h, left : left + w] = True
    return mask


def _blob(size: int, share: float, g: torch.Generator) -> torch.Tensor:
    """An irregular region of ``share`` of the image: smooth noise plus a pull towards a random centre,
    thresholded at the quantile that leaves ``share`` of the pixels, so it is one lump with a ragged edge."""
    noise = torch.rand(1, 1, _BLOB_GRID, _BLOB_GRID, generator=g)
    field = F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False)[0, 0]
    cy, cx = (torch.rand(2, generator=g) * 0.6 + 0.2) * size
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    pull = 1 - ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt() / size
    field = 0.5 * field + pull
    keep = max(1, round(share * size * size))
    cut = field.flatten().topk(keep).values[-1]
    return field >= cut


def paste(id_images: torch.Tensor, ood_images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Each ID image with the masked pixels of its OOD image at the same place (uint8 in, uint8 out)."""
    if id_images.shape != ood_images.shape or masks.shape != (id_images.shape[0], *id_images.shape[2:]):
        raise ValueError(f"paste needs ID and OOD images of one shape and a mask per image; got {tuple(id_images.shape)}, "
                         f"{tuple(ood_images.shape)} and masks {tuple(masks.shape)}")
    return torch.where(masks[:, None], ood_images, id_images)


def make_composites(id_images: torch.Tensor, ood_images: torch.Tensor, count: int, seed: int,
                    area: tuple[float, float] = AREA) -> Composites:
    """``count`` composites: seeded ID and OOD rows (each used at most once while there are enough), a seeded
    region each. Images are N x 3 x H x W uint8 of one size."""
    if id_images.shape[1:] != ood_images.shape[1:]:
        raise ValueError(f"ID images are {tuple(id_images.shape[1:])} and OOD images {tuple(ood_images.shape[1:])}; "
                         f"composites need one size")
    if count < 1 or not len(id_images) or not len(ood_images):
        raise ValueError(f"composites need at least one ID and one OOD image and a count >= 1 (got {len(id_images)}, "
                         f"{len(ood_images)} and {count})")
    g = torch.Generator().manual_seed(seed)
    id_rows = _rows(len(id_images), count, g)
    ood_rows = _rows(len(ood_images), count, g)
    masks, shapes = region_masks(count, id_images.shape[-1], g, area)
    return Composites(paste(id_images[id_rows], ood_images[ood_rows], masks), masks, id_rows, ood_rows, shapes)


def _rows(n: int, count: int, g: torch.Generator) -> torch.Tensor:
    """``count`` rows of ``n``: a permutation, repeated when ``count`` exceeds ``n``."""
    reps = -(-count // n)
    return torch.cat([torch.randperm(n, generator=g) for _ in range(reps)])[:count]

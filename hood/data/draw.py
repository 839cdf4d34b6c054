"""Which rows of a data set are scored when only part of it is.

Folders are read in sorted order, and most are sorted by class, so "the first N images" of a class-sorted
set is a few of its classes. By default the rows are a seeded random draw without replacement instead,
kept in ascending order so reading stays sequential. The seed is its own (``data.ood_draw_seed``), not
``run.seed``, so every method and every decoder seed scores the very same images; ``first`` keeps the
first rows, the official protocol's reading.
"""

from __future__ import annotations

import numpy as np
import torch

from hood.data.images import ImageSet


def draw_rows(size: int, count: int | None, mode: str, seed: int) -> torch.Tensor:
    """Ascending rows of a ``size``-row set to score: all of them when ``count`` is None or not smaller,
    else the first ``count`` (``mode`` first) or ``count`` drawn at random with ``seed`` (``mode`` random)."""
    if count is None or count >= size:
        return torch.arange(size)
    if mode == "first":
        return torch.arange(count)
    picked = np.random.default_rng(seed).permutation(size)[:count]
    return torch.from_numpy(np.sort(picked)).long()


def draw(images: ImageSet, count: int | None, mode: str, seed: int) -> tuple[ImageSet, torch.Tensor]:
    """The drawn subset of ``images`` and its rows (see :func:`draw_rows`)."""
    rows = draw_rows(len(images), count, mode, seed)
    return (images if len(rows) == len(images) else images.subset(rows)), rows

"""Image files and PIL images given to the Python API, decoded by the rule ``hood score`` reads files with (RGB,
the shorter side resized to the working size, centre-cropped), so a notebook and the command line see the same
pixels."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from hood.data.images import UnreadableImage, _to_rgb, decode_image, resize_center_crop
from hood.data.readers import read_image_file

RULE = "hood.load_images(files, size) resizes the shorter side to size and centre-crops, as hood score does"


def is_file_input(x: Any) -> bool:
    """Whether ``x`` is a PIL image, a path, or a non-empty list/tuple of them (rather than tensors or batches)."""
    if isinstance(x, (Image.Image, str, os.PathLike)):
        return True
    return isinstance(x, (list, tuple)) and bool(x) and all(isinstance(i, (Image.Image, str, os.PathLike)) for i in x)


def _side(item: Image.Image | str | os.PathLike) -> tuple[int, int]:
    if isinstance(item, Image.Image):
        return item.size
    try:
        with Image.open(item) as img:
            return img.size
    except (OSError, ValueError) as err:
        raise ValueError(f"{item}: {_unreadable(item, err)}") from None


def _unreadable(item: Any, err: BaseException) -> str:
    path = Path(item)
    if not path.exists():
        return "no such file"
    if path.is_dir():
        return "a folder; pass its image files, e.g. sorted(Path(folder).glob('*.png'))"
    return f"not a readable image ({(str(err).splitlines() or [type(err).__name__])[0][:80]})"


def decode_one(item: Image.Image | str | os.PathLike, size: int) -> np.ndarray:
    """``size x size x 3`` uint8 of one PIL image or image file."""
    if isinstance(item, Image.Image):
        return np.asarray(resize_center_crop(_to_rgb(item), size), dtype=np.uint8)
    try:
        return decode_image(read_image_file(Path(item)), size)
    except (UnreadableImage, OSError) as err:
        raise ValueError(f"{item}: {_unreadable(item, err)}") from None


def square_size(items: Sequence[Image.Image | str | os.PathLike]) -> int:
    """The one square size all ``items`` already have, or a ValueError naming the sizes and the fix."""
    sides = {_side(i) for i in items}
    (w, h), *others = sorted(sides)
    if others or w != h:
        shown = ", ".join(f"{a}x{b}" for a, b in sorted(sides)[:3])
        raise ValueError(f"the images are not all of one square size ({shown}); give the size the model works at: {RULE}")
    return w


def load_images(items: Image.Image | str | os.PathLike | Sequence[Image.Image | str | os.PathLike], size: int | None = None) -> torch.Tensor:
    """``N x 3 x size x size`` uint8 of PIL images or image files. Without ``size`` they must already be square
    and of one size: a model scores the size it was trained at, which only the caller knows."""
    listed = list(items) if isinstance(items, (list, tuple)) else [items]
    if not listed:
        raise ValueError("no images given")
    size = square_size(listed) if size is None else size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size!r}")
    return torch.from_numpy(np.stack([decode_one(i, size) for i in listed]).transpose(0, 3, 1, 2).copy())

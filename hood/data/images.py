"""Decoding one image file into the protocol's form: RGB uint8, shorter side resized, center-cropped.

Every odd input a user may have (grayscale, 16-bit, palette, alpha, CMYK, EXIF-less JPEGs of any size)
ends as ``3 x size x size`` uint8. Unreadable files raise :class:`UnreadableImage`, which callers count
and report instead of failing the whole set.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

ORIENTATION = 0x0112  # the EXIF tag of how a camera held the picture
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

# PIL refuses images over ~179 Mpx as decompression bombs; OOD sets never need more than this
Image.MAX_IMAGE_PIXELS = 64_000_000


class UnreadableImage(Exception):
    """The bytes are not a decodable image (corrupt, truncated, empty, or another file type)."""


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Bring any PIL mode to RGB; 16/32-bit integer images are rescaled to their own range."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8), mode="L")
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")
    if img.mode in ("LAB", "HSV"):  # PIL has no direct path from these to RGB
        img = Image.fromarray(np.asarray(img.convert("RGB") if img.mode == "HSV" else img)[..., 0], mode="L")
    if img.mode in ("RGBA", "LA"):
        background = Image.new("RGB", img.size, (0, 0, 0))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").split()[-1])
        return background
    return img.convert("RGB")


MAX_ASPECT = 100  # a longer side above this many times the shorter is a strip, not an image to score


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` and center-crop (the protocol's rule); no-op at size. A long strip
    is cropped while resized (PIL's ``box``), so memory is that of the result, not of the strip scaled up."""
    w, h = img.size
    if (w, h) == (size, size):
        return img
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise UnreadableImage(f"{w:,} x {h:,} pixels, an aspect ratio above {MAX_ASPECT}:1")
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if max(nw, nh) > 4 * size:  # the same pixels within one grey level, without the scaled-up strip in memory
        left, top = (nw - size) // 2, (nh - size) // 2
        sx, sy = w / nw, h / nh
        box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
        return img.resize((size, size), Image.BILINEAR, box=box, reducing_gap=None)
    img = img.resize((nw, nh), Image.BILINEAR, reducing_gap=None)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def decode_image(data: bytes, size: int) -> np.ndarray:
    """Bytes of an image file to ``size x size x 3`` uint8 (HWC)."""
    if not data:
        raise UnreadableImage("empty file")
    try:
        with warnings.catch_warnings():
            # past MAX_IMAGE_PIXELS PIL only warns (it errors at twice that): refuse such files outright
            warnings.simplefilter("ignore")  # PIL's "truncated file" and EXIF warnings: the skip report says it
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode(data, size)
    except UnreadableImage:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise UnreadableImage(_reason(err)) from err
    except MemoryError as err:
        raise UnreadableImage("too large to decode") from err
    except Exception as err:  # a corrupt file can make PIL's decoders raise nearly anything
        raise UnreadableImage(_reason(err)) from err


def _decode(data: bytes, size: int) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        shown = ImageOps.exif_transpose(img) if img.getexif().get(ORIENTATION, 1) != 1 else img  # as a viewer shows it
        out = resize_center_crop(_to_rgb(shown), size)
        return np.asarray(out, dtype=np.uint8)


def _reason(err: BaseException) -> str:
    """A short, single-line reason for the skip report."""
    text = (str(err).strip().splitlines() or [""])[0]
    return (text[:80] or type(err).__name__)


def hwc_to_chw(arr: np.ndarray) -> torch.Tensor:
    """``N x H x W x C`` uint8 array to a contiguous ``N x C x H x W`` uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))


@dataclass
class ImageSet:
    """A decoded data set: uint8 images at the working resolution, optional labels and names."""

    name: str
    images: torch.Tensor  # N x 3 x H x W, uint8
    labels: torch.Tensor | None = None  # N, int64
    classes: list[str] | None = None
    names: list[str] | None = None
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, idx: torch.Tensor | list[int] | slice, name: str | None = None) -> ImageSet:
        if isinstance(idx, slice):
            idx = torch.arange(len(self))[idx]
        idx = torch.as_tensor(idx, dtype=torch.long)
        return ImageSet(
            name=name or self.name,
            images=self.images[idx],
            labels=None if self.labels is None else self.labels[idx],
            classes=self.classes,
            names=None if self.names is None else [self.names[i] for i in idx.tolist()],
            skipped=list(self.skipped),
        )

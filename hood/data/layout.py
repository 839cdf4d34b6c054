"""What an installed data set looks like on disk: the fix-ups some archives need after unpacking, and the check
that a folder holds what the loaders expect of its layout. Shared by the registry (which validates entries
against it) and the installer (which checks every unpacked set), so neither imports the other."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from hood.data.images import is_image_name
from hood.errors import DataError


def cifar_files_present(d: Path) -> bool:
    """CIFAR-10's or CIFAR-100's pickled batches, as torchvision or a manual unpacking leaves them."""
    return all((d / n).is_file() for n in ("data_batch_1", "test_batch")) or all((d / n).is_file() for n in ("train", "test"))


def _tinyimagenet_val_to_test(folder: Path) -> None:
    """Tiny ImageNet's test/ has no labels, so its labelled val/ becomes hood's test split: val/images/F
    moves to test/<wnid>/F following val/val_annotations.txt, and train/<wnid>/images/ is flattened."""
    ann = folder / "val" / "val_annotations.txt"
    if not ann.is_file():
        raise DataError("Tiny ImageNet archive has no val/val_annotations.txt; it is not tiny-imagenet-200.zip")
    labels = dict(line.split("\t")[:2] for line in ann.read_text().splitlines() if line.count("\t") >= 1)
    by_class = folder / ".test-by-class"
    for img in sorted((folder / "val" / "images").iterdir()):
        wnid = labels.get(img.name)
        if wnid is None:
            raise DataError(f"Tiny ImageNet: val image {img.name} is not in val_annotations.txt")
        (by_class / wnid).mkdir(parents=True, exist_ok=True)
        img.rename(by_class / wnid / img.name)
    shutil.rmtree(folder / "val")
    if (folder / "test").exists():
        shutil.rmtree(folder / "test")
    by_class.rename(folder / "test")
    for cls in (folder / "train").iterdir():
        images = cls / "images"
        if images.is_dir():
            for f in images.iterdir():
                f.rename(cls / f.name)
            images.rmdir()


POSTPROCESS: dict[str, Callable[[Path], None]] = {"tinyimagenet-val-to-test": _tinyimagenet_val_to_test}


def _has_images(folder: Path) -> bool:
    return any(is_image_name(p.name) for p in folder.rglob("*") if p.is_file())


def layout_problem(layout: str, folder: Path) -> str | None:
    """Why ``folder`` is not what the loaders expect for ``layout`` (None when it is)."""
    if layout == "cifar-python":
        return None if cifar_files_present(folder) else "no CIFAR python batches (data_batch_1/test_batch or train/test)"
    if layout == "images":
        return None if _has_images(folder) else "no image files"
    if layout == "splits":
        ok = all((folder / s).is_dir() and _has_images(folder / s) for s in ("train", "test"))
        return None if ok else "no train/ and test/ folders with images"
    if layout == "svhn-mat":
        from scipy.io import whosmat

        mats = sorted(folder.glob("*.mat"))
        shapes = dict((n, s) for n, s, _ in whosmat(mats[0])) if mats else {}
        x = shapes.get("X", ())
        return None if len(x) == 4 and tuple(x[:3]) == (32, 32, 3) else "no .mat file with X of shape 32x32x3xN"
    if layout == "npy":
        import numpy as np

        arrays = sorted(folder.glob("*.npy"))
        if not arrays:
            return "no .npy file"
        arr = np.load(arrays[0], mmap_mode="r")
        ok = arr.ndim == 4 and arr.shape[-1] == 3 and arr.dtype == np.uint8
        return None if ok else f"the .npy array is {arr.shape} {arr.dtype}, not N x H x W x 3 uint8"
    if layout == "imglist":
        return None if any(p.suffix == ".txt" for p in folder.rglob("*") if p.is_file()) else "no image list (.txt) files"
    return f"unknown layout '{layout}'"

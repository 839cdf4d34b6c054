"""Shared fixtures: every test runs with its own cache, data root and runs folder, on tiny synthetic data.

Nothing here reads ../shared or the network; images are generated so each class has a distinct colour
pattern that a small network separates within a few epochs.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOD_CACHE", str(tmp_path / "_cache"))
    monkeypatch.setenv("HOOD_DATA", str(tmp_path / "_data"))
    monkeypatch.delenv("HOOD_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)


def class_image(cls: int, i: int, size: int = 32) -> np.ndarray:
    """A size x size x 3 uint8 image whose dominant colour and stripe direction encode ``cls``."""
    rng = np.random.default_rng(cls * 1000 + i)
    base = np.zeros((size, size, 3), dtype=np.float32)
    base[..., cls % 3] = 180
    stripes = (np.arange(size) // 4 % 2).astype(np.float32) * 60
    base += stripes[None, :, None] if cls % 2 else stripes[:, None, None]
    base += rng.normal(0, 12, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def write_image_folder(root: Path, classes: int = 3, per_class: int = 6, size: int = 32, ext: str = "png", offset: int = 0) -> Path:
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(class_image(c, i + offset, size)).save(d / f"{i:03d}.{ext}")
    return root


def write_flat_folder(root: Path, count: int = 10, size: int = 32, seed: int = 7) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / f"img{i:03d}.png")
    return root


@pytest.fixture
def id_folder(tmp_path: Path) -> Path:
    """An ID set with train/ and test/, 3 classes, 32x32 PNGs."""
    root = tmp_path / "tiny-id"
    write_image_folder(root / "train", per_class=12)
    write_image_folder(root / "test", per_class=4, offset=100)
    return root


@pytest.fixture
def id_archive(id_folder: Path, tmp_path: Path) -> Path:
    path = tmp_path / "tiny-id.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tf.add(id_folder, arcname="tiny-id")
    return path


@pytest.fixture
def ood_folder(tmp_path: Path) -> Path:
    return write_flat_folder(tmp_path / "tiny-ood", count=12)


def save_random_classifier(path: Path, arch: str = "wrn10_2", num_classes: int = 3, seed: int = 0) -> Path:
    """A hood classifier checkpoint with random (seeded) weights: decoder tests need no pretraining."""
    from hood.models.checkpoint import classifier_state, save_checkpoint
    from hood.models.registry import build_classifier

    torch.manual_seed(seed)
    model = build_classifier(arch, num_classes).eval()
    save_checkpoint(classifier_state(model, arch, [f"class{c}" for c in range(num_classes)], {}), path)
    return path


@pytest.fixture
def tiny_classifier(tmp_path: Path) -> Path:
    """A random 3-class wrn10_2 classifier checkpoint, matching the id_folder fixture's classes."""
    return save_random_classifier(tmp_path / "clf.pt")

"""Classifier files and image files for the Python API: ``hood.load_classifier(path)`` and
``hood.load_images(files, size)``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from hood.data.files import load_images as _load_images
from hood.detectors.base import device_of, plain_errors
from hood.models.base import Classifier
from hood.models.checkpoint import load_classifier as _load_checkpoint


@plain_errors
def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> Classifier:
    """The classifier a hood checkpoint holds (``classifier.pt`` of ``hood pretrain``) or one of the paper
    authors' files (``net_state_dict`` / ``cls_state_dict``; ResNet18, WRN-40-2 or ResNet50, told from the
    weights), in eval mode, ready for any detector: ``hood.HeatmapDetector(hood.load_classifier(path))``.

    Its ``classes`` are the checkpoint's class names (None when it holds none, as the authors' files) and its
    ``arch`` the architecture name. Called directly it takes images normalized as hood trains them,
    ``(x / 255 - 0.5) / 0.5``; the detectors apply that themselves and take images unnormalized.
    """
    loaded = _load_checkpoint(path)
    model = loaded.model.to(device_of(device)).eval()
    model.classes = loaded.classes  # type: ignore[assignment]  # plain attributes: what a notebook asks of it
    model.arch = loaded.arch  # type: ignore[assignment]
    return model


def load_images(files: Image.Image | str | os.PathLike | Sequence[Image.Image | str | os.PathLike],
                size: int | None = None) -> torch.Tensor:
    """PIL images or image files as ``N x 3 x size x size`` uint8, by the rule ``hood score`` reads files with:
    the shorter side resized to ``size``, then centre-cropped. Without ``size`` the images must already be
    square and of one size. Every ``predict`` / ``score`` also takes the files themselves."""
    return _load_images(files, size)

"""Reading CIFAR-10 and CIFAR-100 in their publishers' "python version" layout: pickled batches.

The batches are pickles, so they are read with an unpickler that rebuilds only numpy arrays, lists, dicts and
strings: a file that is not what it claims cannot run code. The registry's checksum, verified by
``hood download``, decides which files are the right ones (torchvision's built-in per-file checksums would
refuse a lab's own copy registered through ``$HOOD_REGISTRY``).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hood.data.images import ImageSet
from hood.errors import DataError

# what the official batches (and any numpy array pickled by protocol 2 to 5) are rebuilt from
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        plain = module.replace("numpy._core", "numpy.core")
        if (plain, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if plain.startswith("numpy.core.") and hasattr(np, "_core"):
            module = plain.replace("numpy.core", "numpy._core")  # numpy 2's home, without the deprecation shim
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        obj = _ArraysOnly(fh, encoding="latin1").load()
    if not isinstance(obj, dict):
        raise ValueError("not a dict of batches")
    return obj


def _batch(path: Path, label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    d = _unpickle(path)
    data = np.asarray(d["data"], dtype=np.uint8)
    labels = torch.tensor([int(v) for v in d[label_key]], dtype=torch.long)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise ValueError(f"{path.name} holds {data.shape} images for {len(labels)} labels, expected N x 3072")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), labels


def read_cifar_python(folder: Path, name: str) -> dict[str, ImageSet]:
    """``{'train', 'test'}`` at 32x32: CIFAR-10's data_batch_*/test_batch/batches.meta, else CIFAR-100's
    train/test/meta (its 100 fine labels)."""
    if (folder / "data_batch_1").is_file():
        train_files = sorted(folder.glob("data_batch_*"), key=lambda p: (len(p.name), p.name))  # 1..5, then 10
        test_files, meta, label_key, names_key = [folder / "test_batch"], folder / "batches.meta", "labels", "label_names"
    else:
        train_files, test_files, meta, label_key, names_key = [folder / "train"], [folder / "test"], folder / "meta", "fine_labels", "fine_label_names"
    try:
        classes = [str(c) for c in _unpickle(meta)[names_key]]
        out = {}
        for split, files in (("train", train_files), ("test", test_files)):
            parts = [_batch(f, label_key) for f in files]
            images, labels = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
            if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < len(classes):
                raise ValueError(f"labels outside the {len(classes)} classes of {meta.name}")
            out[split] = ImageSet(name, images, labels, classes)
    except (OSError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as err:
        why = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        raise DataError(f"{name} under {folder} is incomplete or corrupted ({why}); reinstall it with `hood download {name} --force`") from None
    return out

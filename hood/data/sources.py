"""Turning whatever names a data set (built-in name, registry name, folder, archive, .npy, .mat) into
decoded :class:`ImageSet` objects at the working resolution.

Two entry points: :func:`load_id_splits` for an ID set (``train`` and ``test`` splits with labels) and
:func:`load_image_set` for an auxiliary or OOD set (unlabelled; a set with splits contributes ``test``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from hood.data import registry
from hood.data.builtin import BUILTIN_NAMES, load_builtin
from hood.data.cache import cached, source_key
from hood.data.cifar import read_cifar_python
from hood.data.images import ImageSet, hwc_to_chw
from hood.data.readers import decode_members, is_archive, list_members, split_names
from hood.data.validation import split_aux_classes
from hood.errors import DataError, DatasetMissingError
from hood.fileio import exists

Selector = Callable[[int], torch.Tensor]


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or "\\" in spec or spec.startswith(".") or Path(spec).suffix != "" or exists(Path(spec))


def _resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (shorter side) + center-crop a uint8 batch already in memory (.npy/.mat/CIFAR sources)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    from torchvision.transforms.v2 import functional as TF

    return TF.center_crop(TF.resize(images, size, antialias=True), [size, size])


def _read_folder_or_archive(path: Path, size: int, strict: bool, name: str) -> dict[str, ImageSet]:
    def build() -> dict[str, ImageSet]:
        members = list_members(path)
        if {"train", "test"} <= split_names(members):
            train = [m for m in members if m.relpath.startswith("train/")]
            test = [m for m in members if m.relpath.startswith("test/")]
            for ms, prefix in ((train, "train/"), (test, "test/")):
                for m in ms:
                    m.relpath = m.relpath[len(prefix):]
            tr = decode_members(name, train, size, strict)
            te = decode_members(name, test, size, strict, classes=tr.classes)
            return {"train": tr, "test": te}
        return {"all": decode_members(name, members, size, strict)}

    key = source_key(path, size, extra=f"strict={strict}")
    return build() if strict else cached(key, build)


def _read_npy(path: Path, size: int, name: str, select: Selector | None) -> ImageSet:
    """An ``N x H x W x 3`` uint8 array, memory-mapped: only the selected rows are read."""
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as err:
        raise DataError(f"{path} is not a readable .npy array ({err}); re-download it") from err
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise DataError(f"{path}: expected an N x H x W x 3 uint8 array, found {arr.shape} {arr.dtype}")
    idx = select(arr.shape[0]) if select is not None else torch.arange(arr.shape[0])
    order = torch.sort(idx).values.numpy()
    rows = hwc_to_chw(np.asarray(arr[order]))
    return ImageSet(name, _resize_batch(rows, size), names=[f"{name}[{i}]" for i in order.tolist()])


def _read_svhn_mat(path: Path, size: int, name: str) -> ImageSet:
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except Exception as err:  # scipy raises several unrelated types for a bad file
        raise DataError(f"{path} is not a readable SVHN .mat file ({type(err).__name__}); re-download it") from err
    x = torch.from_numpy(np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1)))  # 32x32x3xN -> Nx3x32x32
    return ImageSet(name, _resize_batch(x, size), names=[f"{name}[{i}]" for i in range(len(x))])


def _registry_splits(name: str, root: Path, size: int, strict: bool, select: Selector | None) -> dict[str, ImageSet]:
    e = registry.entry(name)
    assert e is not None
    if not registry.is_installed(name, root):
        raise DatasetMissingError(name, str(root))
    d = registry.set_dir(name, root)
    layout = e["layout"]
    if layout == "imglist":
        raise DataError(f"'{name}' holds image lists, not images; benchmarks read it (`hood evaluate --benchmark list`)")
    if layout == "cifar-python":
        return {split: ImageSet(s.name, _resize_batch(s.images, size), s.labels, s.classes) for split, s in read_cifar_python(d, name).items()}
    if layout == "svhn-mat":
        return {"all": _read_svhn_mat(next(d.glob("*.mat")), size, name)}
    if layout == "npy":
        return {"all": _read_npy(next(d.glob("*.npy")), size, name, select)}
    return _read_folder_or_archive(d, size, strict, name)


def _splits(spec: str, root: Path, size: int, strict: bool, select: Selector | None = None) -> dict[str, ImageSet]:
    builtin = load_builtin(spec, size)
    if builtin is not None:
        return builtin if isinstance(builtin, dict) else {"all": builtin}
    name = registry.canonical(spec)
    if name is not None:
        return _registry_splits(name, root, size, strict, select)
    if _looks_like_path(spec):
        path = Path(spec).expanduser()
        if not exists(path):
            raise DataError(f"data set path {path} does not exist")
        if path.is_dir() or is_archive(path):
            return _read_folder_or_archive(path, size, strict, path.name)
        if path.suffix == ".npy":
            return {"all": _read_npy(path, size, path.stem, select)}
        if path.suffix == ".mat":
            return {"all": _read_svhn_mat(path, size, path.stem)}
        raise DataError(f"{path} is neither a folder nor an archive (.tar, .tar.gz, .tgz, .zip), .npy or .mat")
    raise DataError(f"unknown data set '{spec}'{registry.suggest(spec, BUILTIN_NAMES)}; see `hood download --list`")


def require_available(specs: list[str], root: Path) -> None:
    """Fail fast, without reading any image, when a set in ``specs`` cannot be loaded: a name nobody knows or
    a path that does not exist (the first such), else every registry set that is not installed, in one line
    naming one ``hood download`` command for all of them."""
    missing: list[str] = []
    for spec in specs:
        if spec in BUILTIN_NAMES:
            continue
        name = registry.canonical(spec)
        if name is not None:
            if not registry.is_installed(name, root) and name not in missing:
                missing.append(name)
        elif _looks_like_path(spec):
            if not exists(Path(spec).expanduser()):
                raise DataError(f"data set path {spec} does not exist")
        else:
            raise DataError(f"unknown data set '{spec}'{registry.suggest(spec, BUILTIN_NAMES)}; see `hood download --list`")
    if missing:
        raise DatasetMissingError(missing, str(root))


def load_id_splits(spec: str, root: Path, size: int, strict: bool = False) -> dict[str, ImageSet]:
    """``{'train', 'test'}`` of an ID set, both labelled with the same class list."""
    splits = _splits(spec, root, size, strict)
    if "train" not in splits or "test" not in splits:
        raise DataError(
            f"ID data set '{spec}' needs train/ and test/ subfolders, each in <class>/<image> layout"
        )
    if splits["train"].labels is None:
        raise DataError(f"ID data set '{spec}' has no class folders (expected train/<class>/<image>)")
    return splits


def load_image_set(
    spec: str, root: Path, size: int, strict: bool = False, select: Selector | None = None, hold_out_classes: int = 0
) -> ImageSet:
    """An unlabelled set: all of a flat or class folder, or the test split of a set with splits.

    ``hold_out_classes``: leave out the last that many class folders (``data.val_aux_classes``, the
    validation OOD set; :func:`load_held_out_classes` returns them) before ``select`` draws from the rest.
    """
    s = _unlabelled_source(_splits(spec, root, size, strict, None if hold_out_classes else select))
    if hold_out_classes:
        s = split_aux_classes(s, hold_out_classes, spec)[0]
    s = ImageSet(dataset_label(spec), s.images, None, None, s.names, s.skipped)
    if select is not None and (hold_out_classes or not _is_memory_mapped(spec)):  # memory-mapped sets were selected while read
        s = s.subset(select(len(s)))
    return s


def load_held_out_classes(spec: str, root: Path, size: int, classes: int, strict: bool = False) -> ImageSet:
    """The validation OOD set: the last ``classes`` class folders of ``spec``, named ``<set>-val``."""
    held = split_aux_classes(_unlabelled_source(_splits(spec, root, size, strict)), classes, spec)[1]
    return ImageSet(f"{dataset_label(spec)}-val", held.images, None, None, held.names, held.skipped)


def _unlabelled_source(splits: dict[str, ImageSet]) -> ImageSet:
    """The part of a set that serves as an OOD or outlier set: its test split, else all of it."""
    return splits.get("test") or splits.get("all") or next(iter(splits.values()))


def _is_memory_mapped(spec: str) -> bool:
    e = registry.entry(spec)
    return (e is not None and e["layout"] == "npy") or (e is None and spec.lower().endswith(".npy"))


def dataset_label(spec: str) -> str:
    """A short display name: the built-in or registry name (an alias gives its set's name), or the file name
    without archive suffixes."""
    if spec in BUILTIN_NAMES:
        return spec
    name = registry.canonical(spec)
    if name is not None:
        return name
    name = Path(spec).name
    for suf in (".tar.gz", ".tgz", ".tar", ".zip", ".npy", ".mat"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name

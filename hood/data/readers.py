"""Reading image folders and archives (``.tar``, ``.tar.gz``, ``.tgz``, ``.zip``) in place.

Archives are streamed member by member and never extracted, so a hostile member name cannot land
anywhere. Decoded sets are cached as uint8 tensors (see :mod:`hood.data.cache`), so an archive is
decoded once, never per epoch.

Layouts, detected from the member paths after stripping one common top folder:
- ``train/`` and ``test/`` subfolders, each ``<class>/<file>``: an ID data set with its splits;
- ``<class>/<file>``: a labelled image folder;
- files at the top: a flat folder (labels unknown).
"""

from __future__ import annotations

import lzma
import os
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hood.data.images import IMAGE_EXTENSIONS, ImageSet, UnreadableImage, decode_image, hwc_to_chw, is_image_name
from hood.errors import DataError

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
MAX_MEMBER_BYTES = 256 * 1024 * 1024  # no single image is this large; bigger members are refused


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


@dataclass
class Member:
    """One image file inside a folder or archive, with its path relative to the set's root."""

    relpath: str
    read: Callable[[], bytes]


def _folder_members(root: Path) -> list[Member]:
    members = []

    def unreadable(err: OSError) -> None:
        raise DataError(f"cannot read the folder {err.filename or root}: {err.strerror or err}")

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=unreadable):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if fn.startswith(".") or not is_image_name(fn):
                continue
            full = Path(dirpath) / fn
            members.append(Member(full.relative_to(root).as_posix(), full.read_bytes))
    return members


def _iter_archive(path: Path) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, bytes)`` for every regular image member, streaming (no random access needed)."""
    name = path.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if info.is_dir() or not is_image_name(info.filename):
                        continue
                    if info.file_size > MAX_MEMBER_BYTES:
                        raise DataError(f"{path}: member {info.filename} is implausibly large; refusing the archive")
                    yield info.filename, zf.read(info)
        else:
            with tarfile.open(path, mode="r|*") as tf:
                for info in tf:
                    if not info.isfile() or not is_image_name(info.name):
                        continue
                    if info.size > MAX_MEMBER_BYTES:
                        raise DataError(f"{path}: member {info.name} is implausibly large; refusing the archive")
                    fh = tf.extractfile(info)
                    yield info.name, fh.read() if fh is not None else b""
    except DataError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError,
            NotImplementedError, RuntimeError) as err:
        # RuntimeError: an encrypted zip member; NotImplementedError: an unsupported zip compression
        reason = (str(err).strip().splitlines() or [""])[0][:80]
        raise DataError(f"{path} is not a readable archive ({type(err).__name__}{': ' + reason if reason else ''}); re-download it") from None


def _archive_members(path: Path) -> list[Member]:
    members = []
    for name, data in _iter_archive(path):
        clean = name.lstrip("./").lstrip("/")
        if not clean or any(part in ("..", "") for part in clean.split("/")):
            continue  # never trust member names; such members are not images of the set anyway
        members.append(Member(clean, (lambda d=data: d)))
    members.sort(key=lambda m: m.relpath)
    return members


def list_members(path: Path) -> list[Member]:
    """All image members of a folder or archive, sorted, with one common top folder stripped."""
    members = _archive_members(path) if is_archive(path) else _folder_members(path)
    while members:
        tops = {m.relpath.split("/", 1)[0] for m in members}
        if len(tops) == 1 and all("/" in m.relpath for m in members):
            top = tops.pop()
            if top in ("train", "test"):
                break
            members = [Member(m.relpath.split("/", 1)[1], m.read) for m in members]
        else:
            break
    return members


def split_names(members: list[Member]) -> set[str]:
    return {m.relpath.split("/", 1)[0] for m in members if "/" in m.relpath}


def decode_members(
    name: str, members: list[Member], size: int, strict: bool, classes: list[str] | None = None
) -> ImageSet:
    """Decode members; ``<class>/<file>`` paths give labels. Unreadable files are skipped and listed."""
    if not members:
        raise DataError(f"data set '{name}' holds no images (looked for files ending in {', '.join(IMAGE_EXTENSIONS[:4])}, ...)")
    depth2 = all(m.relpath.count("/") >= 1 for m in members)
    if depth2 and classes is None:
        classes = sorted({m.relpath.split("/", 1)[0] for m in members})
    index = {c: i for i, c in enumerate(classes)} if (depth2 and classes) else None
    arrays, labels, names, skipped = [], [], [], []
    for m in members:
        try:
            try:
                data = m.read()
            except OSError as err:  # no permission, a dangling link, a file that vanished
                raise UnreadableImage(err.strerror or type(err).__name__) from err
            arrays.append(decode_image(data, size))
        except UnreadableImage as err:
            if strict:
                raise DataError(f"{name}: {m.relpath} is not a readable image ({err}); drop --strict to skip such files") from err
            skipped.append(m.relpath)
            continue
        names.append(m.relpath)
        if index is not None:
            cls = m.relpath.split("/", 1)[0]
            if cls not in index:
                raise DataError(f"{name}: class folder '{cls}' is not among the training classes {classes[:5]}...")
            labels.append(index[cls])
    if not arrays:
        raise DataError(f"data set '{name}': none of its {len(members)} files is a readable image")
    images = hwc_to_chw(np.stack(arrays))
    return ImageSet(
        name=name,
        images=images,
        labels=torch.tensor(labels, dtype=torch.long) if index is not None else None,
        classes=classes if index is not None else None,
        names=names,
        skipped=skipped,
    )

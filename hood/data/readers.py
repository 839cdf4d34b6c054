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
import stat
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
MAX_MEMBER_BYTES = 256 * 1024 * 1024  # no single image file is this large; bigger files and members are refused
MAX_ARCHIVE_BYTES = 16 * MAX_MEMBER_BYTES  # what one archive may unpack to when its images are scored
MAX_ARCHIVE_MEMBERS = 50_000  # images scored from one archive: more take many minutes, and are a set to evaluate


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def read_image_file(path: Path, limit: int = MAX_MEMBER_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; anything else is :class:`UnreadableImage` with
    the reason. Opened without blocking and checked before a byte is read, so a FIFO (which would wait for a
    writer forever), a device behind a link (``/dev/zero`` never ends) or a huge sparse file costs nothing."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableImage("not a regular file: a FIFO, device, socket or folder")
        if info.st_size > limit:
            raise UnreadableImage(f"{info.st_size / 2**20:,.0f} MiB, above the {limit // 2**20} MiB limit for one image")
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:  # it grew while being read
            raise UnreadableImage(f"above the {limit // 2**20} MiB limit for one image")
        return data
    finally:
        os.close(fd)


@dataclass
class Member:
    """One image file inside a folder or archive, with its path relative to the set's root."""

    relpath: str
    read: Callable[[], bytes]
    skipped: str | None = None  # why the file is listed but not read (a hidden file)


def folder_members(root: Path, hidden: bool = False) -> list[Member]:
    """The image files under ``root`` (hidden folders and links to folders left out), paths relative to it;
    hidden image files are left out too, or with ``hidden`` listed as skipped (``hood score`` names every file
    it does not score)."""
    members = []

    def unreadable(err: OSError) -> None:
        raise DataError(f"cannot read the folder {err.filename or root}: {err.strerror or err}")

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=unreadable):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if not is_image_name(fn) or (fn.startswith(".") and not hidden):
                continue
            full = Path(dirpath) / fn
            if fn.startswith("."):
                members.append(Member(full.relative_to(root).as_posix(), bytes, "a hidden file (its name starts with '.'): not scored"))
                continue
            members.append(Member(full.relative_to(root).as_posix(), lambda full=full: read_image_file(full)))
    return members


def iter_archive(path: Path, skip_large: bool = False, total_limit: int | None = None) -> Iterator[tuple[str, bytes | None, str | None]]:
    """``(name, bytes, None)`` for every regular image member, streaming, one member in memory at a time.

    A member above :data:`MAX_MEMBER_BYTES` refuses the whole archive, or with ``skip_large`` is yielded as
    ``(name, None, reason)``; so is every member after ``total_limit`` unpacked bytes.
    """
    name = path.name.lower()
    total = 0
    count = 0

    def too_large(member: str, size: int) -> str | None:
        if size > MAX_MEMBER_BYTES:
            if not skip_large:
                raise DataError(f"{path}: member {member} is implausibly large; refusing the archive")
            return f"{size / 2**20:,.0f} MiB unpacked, above the {MAX_MEMBER_BYTES // 2**20} MiB limit for one image"
        if total_limit is not None and total + size > total_limit:
            return f"past the {total_limit // 2**30} GiB the archive may unpack to"
        return None

    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                images = [i for i in zf.infolist() if not i.is_dir() and is_image_name(i.filename)]
                for count, info in enumerate(images, 1):
                    if skip_large and count > MAX_ARCHIVE_MEMBERS:
                        yield _past_count(len(images) - MAX_ARCHIVE_MEMBERS)
                        return
                    if stat.S_ISLNK(info.external_attr >> 16):  # its bytes are a path, never followed
                        yield info.filename, None, "a symbolic link in the archive, not a regular file: not read"
                        continue
                    if why := too_large(info.filename, info.file_size):
                        yield info.filename, None, why
                        continue
                    total += info.file_size
                    yield info.filename, zf.read(info), None
        else:
            with tarfile.open(path, mode="r|*") as tf:
                for info in tf:
                    if not is_image_name(info.name) or info.isdir():
                        continue
                    if not info.isfile():  # a link (hard or symbolic) or a device: never followed or read
                        if skip_large:
                            yield info.name, None, f"a {_kind(info)} in the archive, not a regular file: not read"
                        continue
                    count += 1
                    if skip_large and count > MAX_ARCHIVE_MEMBERS:
                        yield _past_count(None)
                        return
                    if why := too_large(info.name, info.size):
                        yield info.name, None, why
                        continue
                    total += info.size
                    fh = tf.extractfile(info)
                    yield info.name, fh.read() if fh is not None else b"", None
    except DataError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError,
            NotImplementedError, RuntimeError) as err:
        # RuntimeError: an encrypted zip member; NotImplementedError: an unsupported zip compression
        reason = (str(err).strip().splitlines() or [""])[0][:80]
        raise DataError(f"{path} is not a readable archive ({type(err).__name__}{': ' + reason if reason else ''}); re-download it") from None


def _kind(info: tarfile.TarInfo) -> str:
    return "hard link" if info.islnk() else "symbolic link" if info.issym() else "device, FIFO or other special file"


def _past_count(more: int | None) -> tuple[str, None, str]:
    """The row that ends an archive of more images than ``hood score`` reads from one, saying how many were left."""
    rest = f"{more:,} more image members" if more is not None else "the rest of its members"
    return (f"(after {MAX_ARCHIVE_MEMBERS:,} images)", None,
            f"{rest} not scored: at most {MAX_ARCHIVE_MEMBERS:,} are read from one archive; split it")


def safe_member_name(name: str) -> str | None:
    """A member's path without leading ``./`` or ``/``; None for names that climb out (``..``) or are empty."""
    clean = name.lstrip("./").lstrip("/")
    if not clean or any(part in ("..", "") for part in clean.split("/")):
        return None
    return clean


def _archive_members(path: Path) -> list[Member]:
    members = []
    for name, data, _ in iter_archive(path):
        clean = safe_member_name(name)
        if clean is None:
            continue  # never trust member names; such members are not images of the set anyway
        members.append(Member(clean, (lambda d=data: d)))  # type: ignore[misc]
    members.sort(key=lambda m: m.relpath)
    return members


def list_members(path: Path) -> list[Member]:
    """All image members of a folder or archive, sorted, with one common top folder stripped."""
    members = _archive_members(path) if is_archive(path) else folder_members(path)
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

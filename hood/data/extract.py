"""Safe extraction of downloaded archives (``.tar``, ``.tar.gz``, ``.zip``) into a fresh directory.

An archive from the internet is hostile until proven otherwise. Every member is checked *before* a single
byte is written, so a bad archive is refused whole, never half-extracted:

- no member may land outside the target: absolute paths, drive letters and ``..`` components are refused;
- symbolic and hard links are refused when they point outside the target (in-tree links are allowed);
- device files and FIFOs are refused (a data set has no use for them);
- the total extracted size and the member count are bounded, so a decompression bomb is refused up front.

Tar extraction additionally runs with Python's ``data`` filter where available, as a second line of defence.
The caller owns the target directory and removes it when anything fails (see :mod:`hood.data.download`).
"""

from __future__ import annotations

import posixpath
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hood.errors import DataError

MAX_MEMBERS = 2_000_000  # Tiny ImageNet has ~120k files, Places365 val 36.5k; far above any registered set
_COPY_CHUNK = 1 << 20


class UnsafeArchiveError(DataError):
    """The archive tries to write outside its target, holds links/devices, or is implausibly large."""


@dataclass(frozen=True)
class _Member:
    name: str  # normalized posix path relative to the target
    size: int
    kind: str  # "file" | "dir" | "link"


def _clean_name(archive: Path, raw: str) -> str:
    """The member's path relative to the target, or an error when it could escape it."""
    name = raw.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive.name}: member '{raw}' has an absolute path; refusing the archive")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeArchiveError(f"{archive.name}: member '{raw}' points outside the target ('..'); refusing the archive")
    return "/".join(parts)


def _link_stays_inside(member: str, target: str, hard: bool) -> bool:
    """Symlink targets are relative to the link's folder, hard-link targets to the archive root."""
    if target.startswith("/") or (len(target) > 1 and target[1] == ":"):
        return False
    base = "" if hard else posixpath.dirname(member)
    resolved = posixpath.normpath(posixpath.join(base, target))
    return not (resolved == ".." or resolved.startswith("../"))


def _tar_members(archive: Path, tf: tarfile.TarFile) -> Iterator[_Member]:
    for info in tf:
        name = _clean_name(archive, info.name)
        if info.issym() or info.islnk():
            if not _link_stays_inside(name, info.linkname, hard=info.islnk()):
                raise UnsafeArchiveError(
                    f"{archive.name}: link '{info.name}' -> '{info.linkname}' points outside the target; refusing the archive"
                )
            yield _Member(name, 0, "link")
        elif info.isdir():
            yield _Member(name, 0, "dir")
        elif info.isfile():
            yield _Member(name, info.size, "file")
        else:
            raise UnsafeArchiveError(f"{archive.name}: member '{info.name}' is a device or FIFO; refusing the archive")


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> Iterator[_Member]:
    for info in zf.infolist():
        name = _clean_name(archive, info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            # zipfile writes a link's target as a small regular file, but refuse those that aim outside anyway
            if not _link_stays_inside(name, zf.read(info).decode("utf-8", "replace"), hard=False):
                raise UnsafeArchiveError(f"{archive.name}: link '{info.filename}' points outside the target; refusing the archive")
        yield _Member(name, 0 if info.is_dir() else info.file_size, "dir" if info.is_dir() else "file")


def _check(archive: Path, members: Iterator[_Member], max_bytes: int) -> int:
    """Walk every member once; raise on the first unsafe one. Returns the total extracted size."""
    total = count = 0
    for m in members:
        count += 1
        total += m.size
        if count > MAX_MEMBERS:
            raise UnsafeArchiveError(f"{archive.name}: more than {MAX_MEMBERS:,} members; refusing the archive")
        if total > max_bytes:
            raise UnsafeArchiveError(
                f"{archive.name}: would extract more than {max_bytes:,} bytes (a decompression bomb?); refusing the archive"
            )
    return total


def safe_extract(archive: Path, fmt: str, dest: Path, max_bytes: int) -> int:
    """Check every member of ``archive`` and only then extract it into ``dest``; returns the bytes extracted.

    ``fmt`` is the manifest's format (``tar``, ``tar.gz``, ``zip``). Raises :class:`UnsafeArchiveError`
    before writing anything when a member is unsafe, :class:`DataError` when the archive is unreadable.
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if fmt == "zip":
            with zipfile.ZipFile(archive) as zf:
                total = _check(archive, _zip_members(archive, zf), max_bytes)
                _extract_zip(zf, dest, max_bytes)
        elif fmt in ("tar", "tar.gz", "tgz"):
            with tarfile.open(archive, "r:*") as tf:
                total = _check(archive, _tar_members(archive, tf), max_bytes)
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(dest, filter="data")
                else:  # pragma: no cover - Python without the extraction filters; members were checked above
                    tf.extractall(dest)
        else:
            raise DataError(f"{archive.name}: unknown archive format '{fmt}'")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{archive.name} is not a readable {fmt} archive ({type(err).__name__}: {err})") from err
    return total


def _extract_zip(zf: zipfile.ZipFile, dest: Path, max_bytes: int) -> None:
    """Write members by their cleaned names (never zipfile's own path handling), counting real bytes."""
    written = 0
    for info in zf.infolist():
        target = dest / _clean_name(Path(zf.filename or "archive"), info.filename)
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as out:
            while chunk := src.read(_COPY_CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise UnsafeArchiveError(f"{Path(zf.filename or '').name}: extracts to more than {max_bytes:,} bytes; refusing the archive")
                out.write(chunk)


def strip_single_top(folder: Path) -> None:
    """Archives usually wrap their content in one folder (``cifar-10-batches-py/``, ``dtd/``): lift it up."""
    entries = list(folder.iterdir())
    if len(entries) != 1 or not entries[0].is_dir() or entries[0].is_symlink():
        return
    top = entries[0]
    holder = top.rename(folder / f".hood-strip-{top.name}")
    for child in holder.iterdir():
        shutil.move(str(child), str(folder / child.name))
    holder.rmdir()

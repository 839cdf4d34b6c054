"""A disk cache of decoded image sets, so folders and archives are decoded once per machine.

Keyed by the source's absolute path, its size and modification time (for a folder: of every file), and
the working resolution. Entries are written atomically and loaded with ``weights_only=True``. The cache
lives in ``$HOOD_CACHE``, else ``~/.cache/hood``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import torch

from hood.data.images import ImageSet
from hood.fileio import atomic_save_with

CACHE_VERSION = 2  # 2: images as displayed (EXIF orientation), long strips cropped while resized


def cache_dir() -> Path:
    return Path(os.environ.get("HOOD_CACHE") or Path.home() / ".cache" / "hood")


def source_key(path: Path, size: int, extra: str = "") -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{path.resolve()}|{size}|{extra}".encode())
    if path.is_file():
        st = path.stat()
        h.update(f"{st.st_size}|{st.st_mtime_ns}".encode())
    else:
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for fn in sorted(filenames):
                h.update(f"{dirpath}/{fn}|{_entry_key(Path(dirpath) / fn)}".encode())
    return h.hexdigest()[:24]


def _entry_key(f: Path) -> str:
    """A folder entry as its decode depends on it: a link by its target's path, size and time (the target's
    content is what is read), a dangling link by itself (the reader reports it as unreadable)."""
    try:
        st = f.stat()
        target = f.resolve() if f.is_symlink() else ""
    except OSError:
        try:
            st, target = f.lstat(), "dangling"
        except OSError:
            return "gone"
    return f"{target}|{st.st_size}|{st.st_mtime_ns}"


def _to_payload(s: ImageSet) -> dict:
    return {
        "name": s.name,
        "images": s.images,
        "labels": s.labels,
        "classes": s.classes,
        "names": s.names,
        "skipped": s.skipped,
    }


def cached(key: str, build: Callable[[], dict[str, ImageSet]]) -> dict[str, ImageSet]:
    """Return the cached splits for ``key``, building and storing them on a miss.

    A cache that cannot be written (read-only home, full disk) is not an error: the data still loads.
    """
    path = cache_dir() / f"{key}.pt"
    if path.is_file():
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            return {k: ImageSet(**v) for k, v in payload.items()}
        except Exception:  # a damaged cache entry is rebuilt, never trusted
            pass
    splits = build()
    try:  # atomic: a crash mid-write leaves no entry rather than a truncated one
        atomic_save_with(path, lambda fh: torch.save({k: _to_payload(v) for k, v in splits.items()}, fh))
    except Exception:
        pass
    return splits

"""Image lists in OpenOOD's ``benchmark_imglist`` format: one ``relative/path label`` per line, the path's first
folder being the pack the image ships in. A benchmark's counts are its lists', so a list that names an image
its pack lacks is an error naming the pack to reinstall, never a quietly shorter set.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from hood.data.cache import cached, source_key
from hood.data.images import ImageSet, UnreadableImage, decode_image, hwc_to_chw
from hood.data.readers import read_image_file, safe_member_name
from hood.errors import DataError

MAX_LIST_BYTES = 64 * 2**20  # the largest published list is a few MB


def read_list(path: Path) -> list[tuple[str, int]]:
    """``(path, label)`` per line (blank lines and ``#`` comments skipped); a malformed line is one error naming it."""
    try:
        if path.stat().st_size > MAX_LIST_BYTES:
            raise DataError(f"{path} is {path.stat().st_size:,} bytes, too large for an image list; reinstall the lists")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"image list {path} does not exist; the lists are incomplete or another version: reinstall them with --force") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read the image list {path} ({getattr(err, 'strerror', None) or err})") from None
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        rel = safe_member_name(parts[0])
        if len(parts) < 2 or rel is None or "/" not in rel or not _is_int(parts[1]):
            raise DataError(f"{path}, line {number}: expected 'pack/relative/path label', got {line[:120]!r}")
        entries.append((rel, int(parts[1])))
    if not entries:
        raise DataError(f"image list {path} names no images")
    return entries


def _is_int(word: str) -> bool:
    return word.lstrip("-").isdigit()


def file_sha256(path: Path) -> str:
    """The sha256 of a list file: recorded with a benchmark's results so a figure can be traced to its lists."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _locate(listed: list[str], pack_dir: Path) -> list[Path]:
    """Where each listed image is: ``pack_dir/rest`` (``rest``, its path below the pack folder); or one folder
    less, where every ``rest`` starts with the one folder the pack's archive held, which installing lifted
    (a pack holding only ``test/``)."""
    rests = [rel.split("/", 1)[1] for rel in listed]
    direct = [pack_dir / r for r in rests]
    top = rests[0].split("/", 1)[0] if "/" in rests[0] else None
    if direct[0].is_file() or top is None or not all(r.startswith(f"{top}/") for r in rests):
        return direct
    lifted = [pack_dir / r.split("/", 1)[1] for r in rests]
    return lifted if lifted[0].is_file() and not (pack_dir / top).is_dir() else direct


def load_listed(list_file: Path, pack_dir: Path, pack: str, size: int, name: str, strict: bool = False,
                labelled: bool = False) -> ImageSet:
    """The images ``list_file`` names, from the installed pack at ``pack_dir`` (``<pack folder>/rest`` is read
    at ``pack_dir/rest``), in list order, decoded at ``size``; ``labelled`` keeps the list's labels (ID lists)."""
    entries = read_list(list_file)
    files = _locate([rel for rel, _ in entries], pack_dir)
    absent = [rel for (rel, _), f in zip(entries, files, strict=True) if not f.is_file()]
    if absent:
        raise DataError(f"{list_file.name} names {len(absent)} of its {len(entries)} images that are not in {pack_dir} "
                        f"(first: {absent[0]}); reinstall the pack with `hood download {pack} --force`")

    def build() -> dict[str, ImageSet]:
        arrays, labels, names, skipped = [], [], [], []
        for (rel, label), f in zip(entries, files, strict=True):
            try:
                arrays.append(decode_image(read_image_file(f), size))
            except (UnreadableImage, OSError) as err:
                if strict:
                    raise DataError(f"{name}: {rel} is not a readable image ({err}); drop --strict to skip such files") from None
                skipped.append(rel)
                continue
            labels.append(label)
            names.append(rel)
        if not arrays:
            raise DataError(f"{name}: none of the {len(entries)} images {list_file.name} names is readable")
        images = hwc_to_chw(np.stack(arrays))
        return {"all": ImageSet(name, images, torch.tensor(labels, dtype=torch.long) if labelled else None, None, names, skipped)}

    marker = pack_dir / ".hood-complete"
    stamp = marker.stat().st_mtime_ns if marker.is_file() else 0  # a reinstalled pack is decoded again
    key = source_key(list_file, size, extra=f"imglist|{pack_dir.resolve()}|{stamp}|{name}|{labelled}|strict={strict}")
    return build()["all"] if strict else cached(key, build)["all"]

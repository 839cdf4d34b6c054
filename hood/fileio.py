"""Atomic file writes: a crash never leaves a truncated file under its final name.

Each writer goes to a temporary file in the target's own directory (so ``os.replace`` is a rename on one
file system), flushes and fsyncs it, then renames. Disk-full and permission failures become one-line
:class:`HoodError` messages and the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from hood.errors import HoodError


def _describe_os_error(path: Path, err: OSError) -> str:
    if err.errno == errno.ENOSPC:
        return f"no space left on the device while writing {path}; free some space or choose another --out"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to write {path}; choose a writable --out"
    return f"could not write {path}: {err.strerror or err}"


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; it replaces ``path`` only on success."""
    path = Path(path)
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as err:
        raise HoodError(_describe_os_error(path, err)) from err
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_save_with(path: str | os.PathLike, writer: Callable[[IO[bytes]], None]) -> None:
    """Atomically write whatever ``writer`` produces into a binary file handle (torch.save, np.save)."""
    with atomic_open(path, "wb") as fh:
        writer(fh)

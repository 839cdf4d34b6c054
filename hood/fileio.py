"""Atomic file writes: a crash never leaves a truncated file under its final name.

Each writer goes to a temporary file in the target's own directory (so ``os.replace`` is a rename on one
file system), flushes and fsyncs it, then renames. Disk-full and permission failures become one-line
:class:`HoodError` messages and the temporary file is removed, so the only names a failed or interrupted
write can leave behind are hidden ``.<name>.*.tmp`` siblings that are deleted on the way out.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from hood.errors import DiskError, HoodError


def exists(path: str | Path) -> bool:
    """Whether ``path`` exists; a name the file system cannot even look up (longer than a file name may be, one
    holding a NUL byte) does not, rather than an OSError about it."""
    try:
        return Path(path).exists()
    except (OSError, ValueError):
        return False


def _umask() -> int:
    """The process umask (read without changing it for good: set and restore at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def describe_os_error(path: Path, err: OSError, where: str = "--out") -> str:
    """One line for a failed write, naming the path and what to do about it (``where``: the flag that
    chooses the location)."""
    if err.errno == errno.ENOSPC or err.errno == errno.EDQUOT:
        return f"no space left on the device while writing {path}; free some space or choose another {where}"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to write {path}; choose a writable {where}"
    return f"could not write {path}: {err.strerror or err}"


def write_error(path: Path, err: OSError, where: str = "--out") -> HoodError:
    """The error for a failed write: a full disk is the machine's (exit 1), a missing permission the user's to fix."""
    cls = DiskError if err.errno in (errno.ENOSPC, errno.EDQUOT) else HoodError
    return cls(describe_os_error(path, err, where))


def ensure_dir(path: str | os.PathLike, where: str = "--out") -> Path:
    """``mkdir -p`` with a one-line error instead of a traceback (read-only or full file systems)."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise HoodError(f"could not create the directory {p}: a file of that name is in the way") from None
    except OSError as err:
        raise write_error(p, err, where) from err
    return p


def _fsync_dir(path: Path) -> None:
    """Make the rename itself durable; best effort (not every file system lets a directory be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive inside the block take effect when it ends (main thread only).

    Why: an interrupt in the middle of ``torch.save`` raises inside its zip writer, whose clean-up then
    fails with a ``RuntimeError`` (a traceback instead of the interrupt's resume hint), and the epoch
    being saved is lost. A checkpoint write takes well under a second; the interrupt waits for it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if received:
            signum = received[0]
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)  # Python's default SIGINT handler raises KeyboardInterrupt here
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", where: str = "--out") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; it replaces ``path`` only on success.

    Any exception, including Ctrl-C/SIGTERM arriving mid-write, removes the temporary file and leaves
    an existing ``path`` untouched. ``where`` names the flag that chooses the location, for the error.
    """
    path = Path(path)
    ensure_dir(path.parent, where)
    tmp_name: str | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        # mkstemp makes the file 0600; give it the mode a plain open() would have had
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666 & ~_umask())
        kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": "utf-8"}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
        _fsync_dir(path.parent)
    except OSError as err:
        raise write_error(path, err, where) from err
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, where: str = "--out") -> None:
    with atomic_open(path, "wb", where) as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_save_with(path: str | os.PathLike, writer: Callable[[IO[bytes]], None]) -> None:
    """Atomically write whatever ``writer`` produces into a binary file handle (torch.save, np.save).

    Some writers (torch's zip writer) wrap the file's ``OSError`` in a ``RuntimeError``; its cause is
    unwrapped so disk-full still reads as one line. Interrupts wait for the write (:func:`interrupts_deferred`).
    """
    with interrupts_deferred(), atomic_open(path, "wb") as fh:
        try:
            writer(fh)
        except RuntimeError as err:
            cause = err.__cause__ or err.__context__
            if isinstance(cause, OSError):
                raise cause from err
            raise

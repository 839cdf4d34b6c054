"""One writer at a time for a folder: a run directory, or a data set being downloaded.

The lock is an advisory ``flock`` on the folder itself, held by the process until its command ends: the
kernel releases it when the process exits, however it dies, so a killed command never leaves a stale
lock. The holder writes its pid and command into ``.hood.lock`` so that a refused writer can name it; that
file is informational only and removed when the lock is given up.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from hood.errors import HoodError

INFO_FILE = ".hood.lock"
F = TypeVar("F", bound=Callable[..., Any])

_held: dict[Path, int] = {}  # folder (resolved) -> the open descriptor that holds its lock
_on_failure: dict[Path, Callable[[BaseException], None]] = {}  # what to record in a folder when its command fails
_depth = 0  # nesting of command scopes; the outermost one releases every lock at its end


class FolderBusy(HoodError):
    """Another process holds the folder's lock."""


def acquire(folder: str | os.PathLike, command: str, advice: str,
            on_failure: Callable[[BaseException], None] | None = None) -> bool:
    """Lock ``folder`` (which must exist) for this process; False when this process already holds it.

    ``command`` is recorded for others to read (``hood train-decoder``); ``advice`` ends the refusal.
    ``on_failure`` is called (best effort) if the command scope holding the lock ends with an exception.
    """
    key = Path(folder).resolve()
    if key in _held:
        return False
    try:
        fd = os.open(key, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise HoodError(f"cannot open {folder}: {err.strerror or err}") from None
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FolderBusy(f"{folder} is in use by {_holder(key)}; {advice}") from None
    except (ImportError, OSError):
        pass  # a file system (or platform) without flock: unlocked, best effort
    _held[key] = fd
    if on_failure is not None:
        _on_failure[key] = on_failure
    with contextlib.suppress(OSError):
        (key / INFO_FILE).write_text(f"{os.getpid()} {command}\n")
    return True


def _holder(folder: Path) -> str:
    """``hood evaluate (pid 123)`` from the holder's info file; vaguer while it has not written it yet."""
    try:
        pid, _, command = (folder / INFO_FILE).read_text().strip().partition(" ")
        return f"`{command}` (pid {int(pid)})"
    except (OSError, ValueError):
        return "another hood process"


def holder(folder: str | os.PathLike) -> str | None:
    """Who holds ``folder``'s lock now (hood train-decoder, pid 123), None when no other process does:
    a reader can then tell a run being written from one that was stopped."""
    key = Path(folder).resolve()
    if key in _held:
        return None
    try:
        fd = os.open(key, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(key)
    except (ImportError, OSError):
        return None
    finally:
        os.close(fd)  # closing drops the shared lock taken to probe
    return None


def release(folder: str | os.PathLike) -> None:
    _on_failure.pop(Path(folder).resolve(), None)
    fd = _held.pop(Path(folder).resolve(), None)
    if fd is None:
        return
    with contextlib.suppress(OSError):
        (Path(folder).resolve() / INFO_FILE).unlink()
    os.close(fd)


def release_all() -> None:
    for folder in list(_held):
        release(folder)


@contextlib.contextmanager
def command_scope() -> Iterator[None]:
    """Locks taken inside are held until the outermost scope ends: a whole command, or a whole job when
    called from Python."""
    global _depth
    _depth += 1
    try:
        yield
    except BaseException as err:
        if _depth == 1:
            for record in list(_on_failure.values()):
                with contextlib.suppress(Exception):  # the disk may be why it failed
                    record(err)
        raise
    finally:
        _depth -= 1
        if _depth == 0:
            release_all()


def holds_locks(fn: F) -> F:
    """Run ``fn`` in a :func:`command_scope`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with command_scope():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def exclusive(folder: str | os.PathLike, command: str, advice: str) -> Iterator[None]:
    """Hold ``folder``'s lock for the block only (unless this process held it already)."""
    taken = acquire(folder, command, advice)
    try:
        yield
    finally:
        if taken:
            release(folder)

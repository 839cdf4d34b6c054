"""Run directories: where every checkpoint and result lives, with the config and environment beside it.

A run directory holds ``run.json`` (command, config name, seed, status, environment), ``config.yaml``
(the full resolved config) and the command's outputs. ``status`` becomes ``complete`` only when the
command finished; commands that pick "the latest run" skip incomplete ones and say so.

A run has one writer at a time: the command that creates, resumes or evaluates it locks it first
(:func:`lock_run`, :mod:`hood.locks`) and holds the lock until it ends. Files read back go through
:func:`read_json` (or a validating reader built on it), so a damaged one is one line naming it and the fix.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hood import locks
from hood.config import Config, dump_yaml
from hood.errors import HoodError, RunError
from hood.fileio import atomic_write_json, atomic_write_text, ensure_dir, write_error
from hood.version import __version__

RUN_FILE = "run.json"
# What a run directory holds and how (run.json, config.yaml, decoder.pt, fits/, results.json, scores/): a run
# of another format is refused by name rather than half-read. Raised whenever any of them changes meaning.
RUN_FORMAT = 2


def _version_of(package: str) -> str | None:
    """An installed package's version without importing it (importing torchvision costs seconds)."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Versions and hardware, recorded with every run so results can be traced and reproduced."""
    import torch

    env: dict[str, Any] = {
        "hood": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": _version_of("torchvision"),
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "argv": sys.argv,
    }
    try:
        here = Path(__file__).resolve().parent.parent
        env["git_commit"] = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    return env


@dataclass
class Run:
    path: Path
    info: dict[str, Any]

    def file(self, name: str) -> Path:
        return self.path / name

    def update(self, **fields: Any) -> None:
        self.info.update(fields)
        if _is_main_process():  # under torchrun only rank 0 writes; the others keep the info in memory
            atomic_write_json(self.path / RUN_FILE, self.info)

    def mark_complete(self, **fields: Any) -> None:
        """The last write of a command: only now do "latest run" pickers consider this run."""
        self.update(status="complete", finished=datetime.now().isoformat(timespec="seconds"), **fields)

    def mark_stopped(self, status: str, **fields: Any) -> None:
        """Record why a run stopped early (``interrupted``, ``diverged``); best effort, never raises."""
        try:
            self.update(status=status, stopped=datetime.now().isoformat(timespec="seconds"), **fields)
        except Exception:  # the disk may be why we stopped; the run stays incomplete either way
            pass


def _is_main_process() -> bool:
    from hood.engine.distributed import is_main_process

    return is_main_process()


def create_run(cfg: Config, command: str, write: bool = True) -> Run:
    """Make a fresh run directory (``cfg.run.out`` or ``runs/<name>-<command>-<timestamp>``).

    Under torchrun rank 0 creates it and every other rank gets the same Run (its timestamped name
    could differ per process), or the same error.
    """
    from hood.engine import distributed

    if not distributed.init_from_env(cfg.run.device):
        return _create_run(cfg, command, write)
    made: tuple[Run | None, str | None] = (None, None)
    if distributed.is_main_process():
        try:
            made = (_create_run(cfg, command, write), None)
        except HoodError as err:
            made = (None, str(err))
    run, error = distributed.broadcast_object(made)
    if run is None:
        raise RunError(error or "rank 0 could not create the run directory")
    return run


def _create_run(cfg: Config, command: str, write: bool = True) -> Run:
    if cfg.run.out:
        path = Path(cfg.run.out)
        if write:  # locked before anything is read or written: a second writer is refused here, naming the first
            ensure_dir(path)
            lock_run(path, command, "wait for it to finish, or choose another --out")
        if (path / RUN_FILE).exists():
            _refuse_reuse(path, command)
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path(cfg.run.runs_dir) / f"{cfg.name}-{command}-{stamp}"
        n = 1
        while path.exists() or (write and not _claim(path)):  # two commands in one second get two folders
            n += 1
            path = Path(cfg.run.runs_dir) / f"{cfg.name}-{command}-{stamp}-{n}"
        if write:
            lock_run(path, command, "wait for it to finish")
    info = {
        "format": RUN_FORMAT,
        "command": command,
        "config_name": cfg.name,
        "seed": cfg.run.seed,
        "status": "running",
        "started": datetime.now().isoformat(timespec="seconds"),
        "started_unix": time.time(),
        "environment": environment(),
    }
    run = Run(path, info)
    if write:
        ensure_dir(path)
        atomic_write_text(path / "config.yaml", dump_yaml(portable(cfg)))
        run.update()
    return run


def portable(cfg: Config) -> Config:
    """The config as a run keeps it: the files and folders it names by a path relative to where the command ran
    made absolute, so the run can be scored, loaded or resumed from any directory."""
    out = copy.deepcopy(cfg)
    for section, key in (("model", "classifier"), ("run", "out"), ("data", "root")):
        value = getattr(getattr(out, section), key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            setattr(getattr(out, section), key, str(Path(value).expanduser().resolve()))
    return out


def _claim(path: Path) -> bool:
    """Create ``path`` unless it already exists (then False)."""
    ensure_dir(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        return False
    except OSError as err:
        raise write_error(path, err) from err
    return True


def _refuse_reuse(path: Path, command: str) -> None:
    """``--out`` naming an existing run: only an unfinished run of the same command that never saved an epoch
    is started afresh; anything else is refused before a file is touched."""
    prev = read_json(path / RUN_FILE, "choose another --out")
    prev = prev if isinstance(prev, dict) else {}
    if prev.get("command") != command:
        raise RunError(f"{path} holds a {prev.get('command') or 'damaged'} run, not a {command} run; choose another --out")
    if prev.get("status") == "complete":
        raise RunError(f"{path} already holds a complete {command} run; choose another --out or delete it")
    if (path / "train_state.pt").is_file():
        raise RunError(
            f"{path} holds an interrupted {command} run; continue it with `hood {command} --resume {path}` "
            f"or choose another --out"
        )


def lock_run(path: str | os.PathLike, command: str, advice: str = "wait for it to finish") -> None:
    """Make this process the run directory's one writer until its command ends (see :mod:`hood.locks`),
    then clear temporary files a killed writer left. Under torchrun rank 0 writes, so rank 0 alone locks."""
    if os.environ.get("RANK", "0") not in ("", "0"):
        return
    f = Path(path) / RUN_FILE
    before = f.stat().st_mtime_ns if f.is_file() else None

    def record(err: BaseException) -> None:
        """A command that stops on an error leaves its run "failed" (or "interrupted"), not "running"; a run
        it did not write (refused at once) is left as it was."""
        if not f.is_file() or f.stat().st_mtime_ns == before:
            return
        run = open_run(path)
        if run.info.get("status") == "running":
            stopped = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            run.mark_stopped(stopped, **({"error": str(err)} if isinstance(err, HoodError) else {}))

    if locks.acquire(path, f"hood {command}", advice, record):
        remove_stale_temps(Path(path))


def remove_stale_temps(path: Path) -> int:
    """Delete the ``.<name>.*.tmp`` files of writes that were killed before their rename (only the run's
    writer calls this, so no write of another process is in flight). Returns how many were removed."""
    removed = 0
    for tmp in path.rglob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed += 1
    return removed


def read_json(path: Path, fix: str) -> Any:
    """A JSON file hood wrote, or one line naming it as damaged and ``fix`` (the command that rewrites it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RunError(f"{path} cannot be read ({getattr(err, 'strerror', None) or err}); {fix}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise RunError(f"{path} is damaged ({err.msg} at line {err.lineno}); {fix}") from None


def open_run(path: str | os.PathLike) -> Run:
    p = Path(path)
    f = p / RUN_FILE
    if not f.is_file():
        raise RunError(f"{p} is not a hood run directory (no {RUN_FILE})")
    info = read_json(f, "the run cannot be used")
    if not isinstance(info, dict):
        raise RunError(f"{f} is damaged (not a JSON object); the run cannot be used")
    if info.get("format") != RUN_FORMAT:
        env = info.get("environment")
        wrote = env.get("hood") if isinstance(env, dict) else None
        raise RunError(f"{p} was written by hood {wrote or 'of an unknown version'} (run format {info.get('format', 1)}); "
                       f"this hood {__version__} reads run format {RUN_FORMAT}: make the run again with this hood, "
                       f"or use the hood that wrote it")
    return Run(p, info)


def find_latest(runs_dir: str | os.PathLike, command: str, config_name: str | None) -> tuple[Run | None, int]:
    """The newest complete run of ``command`` (for ``config_name`` when given) and how many
    incomplete ones were skipped on the way."""
    root = Path(runs_dir)
    if not root.is_dir():
        return None, 0
    skipped = 0
    candidates = []
    for d in root.iterdir():
        f = d / RUN_FILE
        if not f.is_file():
            continue
        try:
            info = json.loads(f.read_text())
        except (ValueError, OSError):
            skipped += 1
            continue
        if not isinstance(info, dict):
            skipped += 1
            continue
        if info.get("format") != RUN_FORMAT:  # another hood's run: never the latest for this one
            continue
        if info.get("command") != command or (config_name and info.get("config_name") != config_name):
            continue
        if info.get("status") != "complete":
            skipped += 1
            continue
        candidates.append((info.get("started_unix", 0.0), d.name, Run(d, info)))
    if not candidates:
        return None, skipped
    return max(candidates, key=lambda c: (c[0], c[1]))[2], skipped

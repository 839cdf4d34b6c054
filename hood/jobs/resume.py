"""Checkpointing and resuming training runs: which config changes a resume allows, the saved training state,
the random generators' states, and the :class:`Checkpointer` that writes ``train_state.pt``."""

from __future__ import annotations

import contextlib
import copy
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from hood.config import Config
from hood.engine.distributed import is_main_process
from hood.errors import ConfigError, RunError, TrainingDivergedError
from hood.models.checkpoint import load_train_state, save_train_state
from hood.progress import NullReporter, Reporter
from hood.runs import Run, lock_run, open_run

# Keys that may differ between an interrupted run and its resumption without changing what it computes:
# where it runs, where files go, how often it checkpoints, and what only `evaluate` reads.
RESUME_FREE = (
    "name", "run.device", "run.num_threads", "run.compile", "run.out", "run.runs_dir", "data.root", "data.strict",
    "data.ood", "data.ood_count", "data.id_test_count", "data.val_ood", "model.classifier", "evaluate.",
    "run.checkpoint_interval_s",
)
# Keys that may change on resume, knowingly altering the result from then on (logged): more or fewer
# epochs, and a lower learning rate after a divergence. Not with pretrain's one-cycle schedule, whose
# whole curve depends on both.
RESUME_LOGGED = ("pretrain.epochs", "pretrain.lr", "decoder.epochs", "decoder.lr")
# Sections a command does not read; differences there never matter to it.
_UNUSED = {"pretrain": ("decoder.", "data.aux"), "train-decoder": ("pretrain.",)}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_changes(saved: dict[str, Any], cfg: Config, command: str, done_epochs: int, reporter: Reporter) -> None:
    """Refuse to resume with a config that would make the result differ from an uninterrupted run.

    Changes under :data:`RESUME_FREE` pass silently, those under :data:`RESUME_LOGGED` pass with a log
    line (and a check that the new epoch count is not below the epochs done); anything else is a
    RunError naming the key, both values and how to proceed.
    """
    old, new = _flatten(saved), _flatten(cfg.to_dict())
    skip = RESUME_FREE + _UNUSED.get(command, ())
    onecycle = command == "pretrain" and cfg.pretrain.scheduler == "onecycle"
    for key in sorted(set(old) | set(new)):
        if key.startswith(skip) or old.get(key) == new.get(key):
            continue
        if key in RESUME_LOGGED and not onecycle:
            if key.endswith(".epochs") and int(new[key]) < done_epochs:
                raise RunError(f"cannot resume with {key}={new[key]}: {done_epochs} epochs are already done")
            reporter.log(f"resuming with {key} {old[key]} -> {new[key]}: the result will differ from an uninterrupted run")
            continue
        hint = " (the one-cycle schedule fixes epochs and learning rate when the run starts)" if onecycle and key in RESUME_LOGGED else ""
        raise RunError(
            f"cannot resume: config key '{key}' was {old.get(key)!r} when the run started, now {new.get(key)!r}{hint}; "
            f"resume without changing it, or start a new run"
        )


def resume_target(resume: str | None, out: str | None, config: str | None, command: str) -> tuple[Run | None, str | None]:
    """For ``--resume RUN``: the run (checked) and the config to start from (the run's own unless
    ``--config`` is given); ``(None, config)`` without ``--resume``. ``--out`` contradicts it."""
    if not resume:
        return None, config
    if out is not None:
        raise ConfigError(f"--resume continues {resume} in place; drop --out {out}")
    run = open_resume(resume, command)
    return run, config if config is not None else str(run.file("config.yaml"))


def open_resume(path: str | Path, command: str) -> Run:
    """The run directory ``--resume`` names, checked to be an unfinished run of ``command``."""
    run = open_run(path)
    if run.info.get("command") != command:
        raise RunError(f"{path} is a {run.info.get('command')} run; resume it with `hood {run.info.get('command')} --resume {path}`")
    lock_run(run.path, command)  # one writer: a second --resume is refused, naming the first
    return run  # a complete run is refused, or extended, by resume_state, which knows the epochs asked for


def resume_state(run: Run, cfg: Config | None = None, command: str | None = None, reporter: Reporter | None = None) -> dict | None:
    """The training state of an interrupted run (None for a fresh one).

    A complete run is refused, unless ``cfg`` asks for more epochs than it ran: then it is extended from
    its last epoch (what a user does when the loss was still falling), as if it had been interrupted there.
    With ``cfg`` and ``command`` given, the config the run started with is compared to ``cfg``
    (see :func:`config_changes`).
    """
    command = command or str(run.info.get("command"))
    complete = run.info.get("status") == "complete"
    f = run.file("train_state.pt")
    if not f.is_file():
        if complete:
            raise RunError(f"{run.path} is already complete and holds no train_state.pt; nothing to resume")
        return None
    state = load_train_state(f, command)
    if complete:
        done = int(state["epoch"])
        section = {"pretrain": "pretrain", "train-decoder": "decoder"}.get(command)
        target = getattr(getattr(cfg, section), "epochs", 0) if cfg is not None and section else 0
        if target <= done:
            raise RunError(f"{run.path} is already complete after {done} epochs; nothing to resume "
                           f"(pass --epochs N above {done} to train it further)")
        (reporter or NullReporter()).log(
            f"extending the complete run {run.path} from {done} to {target} epochs; its earlier evaluation, "
            f"if any, is out of date until `hood evaluate` runs again")
        run.update(evaluated=False)
    if cfg is not None:
        saved = state.get("config")
        if not isinstance(saved, dict):
            saved = _saved_config(run)
        config_changes(saved, cfg, command, int(state["epoch"]), reporter or NullReporter())
    return state


def _saved_config(run: Run) -> dict[str, Any]:
    try:
        data = yaml.safe_load(run.file("config.yaml").read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise RunError(f"{run.path}: its config.yaml is missing or damaged, so resuming cannot be checked; start a new run")
    return data


def capture_rng() -> dict[str, Any]:
    """Python, NumPy, torch and CUDA generator states, in a form ``torch.load(weights_only=True)`` reads
    (NumPy's key array becomes a tensor)."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any] | None) -> None:
    """Undo :func:`capture_rng`; absent parts are left as they are."""
    if not state:
        return
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    """Writes ``train_state.pt`` after an epoch, but at most once per ``min_interval_s`` seconds (0: after every
    epoch); the first and the last epoch are always written, and on an interrupt the newest completed epoch.

    Epochs between checkpoints are kept as an in-memory snapshot (a CPU copy of the state), so Ctrl-C
    or SIGTERM mid-epoch can still save the last completed epoch before the command exits. Why the
    interval: on a GPU an epoch takes a second or less and a write (90 MB for ResNet18 with its optimizer,
    fsynced) a sizeable part of that; a hard kill loses at most ``min_interval_s`` seconds of training.
    """

    def __init__(self, run: Run, command: str, total_epochs: int, min_interval_s: float = 0.0) -> None:
        self.run, self.command, self.total = run, command, total_epochs
        self.min_interval_s = min_interval_s
        self.saved_epoch: int | None = None
        self._pending: dict[str, Any] | None = None
        self._pending_info: dict[str, Any] = {}
        self._last_write: float | None = None  # monotonic time of the last write; None: nothing written yet

    def _due(self, epoch: int) -> bool:
        if epoch == self.total or self._last_write is None:
            return True
        return time.monotonic() - self._last_write >= self.min_interval_s

    def epoch_end(self, epoch: int, state: dict[str, Any], **run_info: Any) -> None:
        """Record the state after ``epoch``; ``state`` must already be detached from live tensors' future
        updates only if it is kept (it is deep-copied when not written at once)."""
        if self._due(epoch):
            self._write(epoch, state, run_info)
        else:
            self._pending = copy.deepcopy({"command": self.command, "epoch": epoch, **_to_cpu(state)})
            self._pending_info = {"epochs_done": epoch, **run_info}
            self.run.update(epochs_trained=epoch)  # progress only; epochs_done is what is on disk

    def _write(self, epoch: int, state: dict[str, Any], run_info: dict[str, Any]) -> None:
        if is_main_process():  # under torchrun only rank 0 writes; every rank holds the same state
            save_train_state({"command": self.command, "epoch": epoch, **state}, self.run.file("train_state.pt"))
        self.saved_epoch = epoch
        self._pending = None
        self._last_write = time.monotonic()
        self.run.update(epochs_done=epoch, epochs_trained=epoch, **run_info)

    @contextlib.contextmanager
    def guard(
        self, reporter: Reporter, what: str, lr_key: str, failed_epoch: Callable[[], int], lr: Callable[[], float]
    ) -> Iterator[None]:
        """Around the training loop: an interrupt saves the newest epoch and marks the run interrupted;
        a NaN/inf loss saves the last good epoch, marks it diverged and becomes a one-line error."""
        try:
            yield
        except KeyboardInterrupt:
            saved = self.flush()
            self.run.mark_stopped("interrupted")
            reporter.log(interrupted_message(self.run, self.command, saved))
            raise
        except TrainingDivergedError:
            saved = self.flush()
            self.run.mark_stopped("diverged")
            raise diverged_error(self.run, what, failed_epoch(), lr(), saved, lr_key, self.command) from None

    def flush(self) -> int | None:
        """Write the pending snapshot, if any; returns the epoch now on disk (None: nothing saved yet)."""
        if self._pending is not None:
            pending, info = self._pending, self._pending_info
            self._pending = None
            if is_main_process():
                save_train_state(pending, self.run.file("train_state.pt"))
            self.saved_epoch = int(pending["epoch"])
            self.run.update(**info)
        return self.saved_epoch


def all_finite(module: torch.nn.Module) -> bool:
    """No NaN/inf in any parameter: checked before a checkpoint, so a bad epoch never overwrites a good one."""
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def interrupted_message(run: Run, command: str, saved: int | None) -> str:
    """What survived an interrupt, for the log (the CLI prints the resume command itself)."""
    if saved is None:
        return f"{run.path}: stopped before the first epoch ended; nothing to resume, start again"
    return f"{run.path}: epoch {saved} is saved; `hood {command} --resume {run.path}` continues from there"


def diverged_error(run: Run, what: str, epoch: int, lr: float, saved: int | None, lr_key: str, command: str) -> TrainingDivergedError:
    """NaN/inf loss: one line with the epoch, the learning rate and what was kept."""
    kept = (
        f"the checkpoint of epoch {saved} is kept in {run.path} (resume it with a lower rate: "
        f"`hood {command} --resume {run.path} --set {lr_key}={lr / 10:g}`)"
        if saved else f"no epoch had completed, so nothing was kept; start again with --set {lr_key}={lr / 10:g}"
    )
    return TrainingDivergedError(
        f"{what} loss became NaN/inf in epoch {epoch} at learning rate {lr:g}; the learning rate is probably "
        f"too high: {kept}"
    )

"""The fit cache of a run (``fits/<method>.pt``): what a detector or a combination learned from the ID training
set, under a key naming everything the fit depends on, so ``evaluate`` and ``score`` agree on when a cached fit
applies.

A key holds the method, the classifier's fingerprint, the ID data set, the image size, the number of training
rows fitted on and the method's settings (a combination's: its parts', whose scores it standardizes, and the
rows it took them on). ``score`` cannot count the training rows without loading the set, so it matches on every
other field and then checks the whole key against the one its threshold was set with (``results.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from hood.config import Config
from hood.errors import HoodError
from hood.fileio import atomic_save_with
from hood.fingerprint import fingerprint
from hood.jobs.keys import differing, said
from hood.models.checkpoint import safe_load
from hood.runs import Run
from hood.version import __version__


class Fitted(Protocol):
    def state(self) -> dict[str, Any]: ...
    def load_state(self, state: dict[str, Any]) -> None: ...


def fit_key(method: str, settings: dict[str, Any], fingerprint: str, cfg: Config, n_train: int | None = None,
            **rows: int) -> dict[str, Any]:
    """The cache key of ``method``'s fit; without ``n_train`` (and ``rows``, which rows of the training set a
    combination read) a key that any row count matches."""
    key = {"method": method, "classifier": fingerprint, "id_dataset": cfg.data.id,
           "image_size": cfg.data.image_size, "settings": settings}
    if n_train is not None:
        key.update(n_train=n_train, **rows)
    return key


def fit_path(run: Run, method: str) -> Path:
    return run.path / "fits" / f"{method}.pt"


def load_fit(run: Run, fitted: Fitted, key: dict[str, Any]) -> dict[str, Any] | None:
    """Load the cached fit into ``fitted`` when every field of ``key`` matches; its full key, else None (no
    cache, a damaged one, or one made under other settings: all are refitted by ``evaluate``)."""
    path = fit_path(run, key["method"])
    if not path.is_file():
        return None
    try:
        cached = safe_load(path)
        stored = cached.get("key")
        if not isinstance(stored, dict) or any(stored.get(k) != v for k, v in key.items()):
            return None
        if "checksum" in cached and cached["checksum"] != checksum(cached["state"]):
            return None  # changed after it was saved
        fitted.load_state(cached["state"])
    except (HoodError, KeyError, TypeError, ValueError, RuntimeError, AttributeError):
        return None  # a damaged cache is refitted, not fatal
    return stored


def fit_differs(run: Run, key: dict[str, Any]) -> str | None:
    """How the cached fit's key differs from ``key`` (``"k 50, this scoring uses k 1"``), or None when it does
    not (or cannot be read: then it is damaged)."""
    try:
        stored = safe_load(fit_path(run, key["method"])).get("key")
    except (HoodError, AttributeError):
        return None
    keys = differing(stored, key, only=True)
    return f"{said(stored, keys)}, this scoring uses {said(key, keys)}" if keys and isinstance(stored, dict) else None


def checksum(state: dict[str, Any]) -> str:
    """A fingerprint of what a fit learned (tensors, lists of them, numbers), stored beside it: a fit file changed
    after it was saved (an edited tensor, a flipped byte) is told from the one ``evaluate`` wrote."""
    named: list[tuple[str, torch.Tensor]] = []
    for name, value in state.items():
        for i, v in enumerate(value if isinstance(value, list) else [value]):
            named.append((f"{name}.{i}", v if isinstance(v, torch.Tensor) else torch.tensor(float("nan" if v is None else v))))
    return fingerprint(named)


def save_fit(run: Run, fitted: Fitted, key: dict[str, Any]) -> None:
    state = fitted.state()
    atomic_save_with(fit_path(run, key["method"]), lambda fh: torch.save(
        {"key": key, "hood_version": __version__, "state": state, "checksum": checksum(state)}, fh))

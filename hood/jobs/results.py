"""Everything ``hood evaluate`` leaves in a run, written and read here alone, against one schema:

- ``results.json`` / ``results.csv``: the test table, the thresholds ``hood score`` uses and what each was set
  under; ``validation.json`` / ``validation.csv``: the same for the validation split (no thresholds are read
  from it);
- ``scores/<method>/<set>.npz``: per-sample scores (and the rows they are of), so metrics can be recomputed
  without a GPU; validation sets' files carry the ``val-`` prefix and never overwrite a test set's.

Written so a reader never takes a half-finished evaluation for a finished one: ``results.json`` is marked
``"state": "running"`` before the first score or fit is replaced and ``"complete"`` by its last write, so an
evaluation in progress or killed is refused by name. Read back through one validating reader each: a damaged
file is one line naming it and the command that rewrites it.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hood.errors import RunError
from hood.fileio import atomic_save_with, atomic_write_json, atomic_write_text
from hood.runs import Run, read_json

RESULTS = "results.json"
VALIDATION = "validation.json"
# the keys of results.json whose shape a reader relies on
SCHEMA: dict[str, type] = {"results": dict, "methods": list, "thresholds": dict, "threshold_settings": dict, "fits": dict,
                           "draw": dict, "notes": list}


def rerun(run: Run, methods: str | None = None) -> str:
    """The command that rewrites what ``evaluate`` left in ``run``."""
    return f"rerun `hood evaluate --run {run.path}" + (f" --methods {methods}`" if methods else "`")


def scores_path(run: Run, method: str, set_name: str) -> Path:
    return run.path / "scores" / method / f"{set_name}.npz"


def save_scores(run: Run, method: str, set_name: str, scores: np.ndarray, rows: torch.Tensor | None = None) -> None:
    """float64: float32 would merge nearly saturated MSP scores into ties and shift recomputed metrics. ``rows``:
    which of the set's images (in file order) the scores are of, when only some were drawn."""
    arrays = {"scores": np.asarray(scores, dtype=np.float64)}
    if rows is not None:
        arrays["rows"] = rows.numpy().astype(np.int64)
    atomic_save_with(scores_path(run, method, set_name), lambda fh: np.savez_compressed(fh, **arrays))


def load_scores(run: Run, method: str, set_name: str, expected: int | None = None) -> np.ndarray | None:
    """The saved scores (None when absent); damaged, non-finite or of another length than ``expected``
    (the count ``results.json`` records) is one line naming the file."""
    path = scores_path(run, method, set_name)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            scores = np.asarray(f["scores"], dtype=np.float64)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise RunError(f"{path} is damaged ({type(err).__name__}); {rerun(run, method)}") from None
    if scores.ndim != 1 or not np.isfinite(scores).all():
        raise RunError(f"{path} is damaged (not a row of finite scores); {rerun(run, method)}")
    if expected is not None and len(scores) != expected:
        raise RunError(f"{path} holds {len(scores)} scores, {run.file(RESULTS)} counts {expected}: they are from "
                       f"different evaluations; {rerun(run, method)}")
    return scores


def results_csv(results: dict[str, Any]) -> str:
    """Tidy form: one row per (method, set, metric)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "set", "metric", "value"])
    for method, per_set in results["results"].items():
        for set_name, metrics in per_set.items():
            for k, v in metrics.items():
                w.writerow([method, set_name, k, v])
    return buf.getvalue()


def begin_results(run: Run) -> None:
    """Mark ``results.json`` as being rewritten (keeping what it held), before any score or fit changes."""
    f = run.file(RESULTS)
    try:
        old = read_json(f, "") if f.is_file() else {}
    except RunError:
        old = {}
    atomic_write_json(f, {**(old if isinstance(old, dict) else {}), "state": "running"})


def write_results(run: Run, results: dict[str, Any], validation: bool = False) -> Path:
    """The last write of an evaluation: the table as JSON and CSV (``validation.*`` for the validation split).
    ``results.json`` gains ``"state": "complete"``: from now on its thresholds and scores may be read."""
    name = VALIDATION if validation else RESULTS
    results["state"] = "complete"
    atomic_write_text(run.file(name).with_suffix(".csv"), results_csv(results))
    atomic_write_json(run.file(name), results)
    return run.file(name)


def read_results(run: Run) -> dict[str, Any] | None:
    """``results.json`` checked (None when the run was never evaluated): an evaluation in progress or killed,
    a damaged file or a threshold that is not a finite number is one line with the command that fixes it."""
    f = run.file(RESULTS)
    if not f.is_file():
        return None
    results = read_json(f, rerun(run))
    if not isinstance(results, dict):
        raise RunError(f"{f} is damaged (not a JSON object); {rerun(run)}")
    if results.get("state") != "complete":
        raise RunError(f"{f} belongs to a `hood evaluate` that is still running or was stopped before it finished, "
                       f"so its thresholds and scores may not match; wait for it, or {rerun(run)}")
    for key, kind in SCHEMA.items():
        if not isinstance(results.get(key), kind):
            raise RunError(f"{f} is damaged ('{key}' is not a {kind.__name__}); {rerun(run)}")
    for method, value in results["thresholds"].items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RunError(f"{f} is damaged (the {method} threshold is {value!r}, not a number); {rerun(run, method)}")
    return results

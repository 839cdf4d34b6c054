"""Everything ``hood evaluate`` leaves in a run, written and read here alone, against one schema:

- ``results.json`` / ``results.csv``: the test table, the thresholds ``hood score`` uses and what each was set
  under (the method's settings, and the classifier, ID set and image size it was measured on); thresholds of
  methods an evaluation did not run are kept from the one before, with a note; ``validation.json`` / ``validation.csv``: the same for the validation split (no thresholds are read
  from it);
- ``earlier-results/results-<time>.json`` / ``.csv`` (``validation-<time>``): the table of each earlier evaluation, copied
  there before the next one replaces it (its ``results.json`` names the copy and says so in a note);
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
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hood.errors import RunError
from hood.fileio import atomic_save_with, atomic_write_bytes, atomic_write_json, atomic_write_text
from hood.jobs.keys import differing, flatten, said
from hood.runs import Run, read_json

RESULTS = "results.json"
VALIDATION = "validation.json"
EARLIER = "earlier-results"  # the tables of earlier evaluations of the run, one file each
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


def load_rows(run: Run, method: str, set_name: str) -> np.ndarray | None:
    """Which of the set's images (in file order) the saved scores are of; None when the file records none or
    cannot be read (then :func:`load_scores` says why, where the scores themselves are needed)."""
    try:
        with np.load(scores_path(run, method, set_name), allow_pickle=False) as f:
            return np.asarray(f["rows"], dtype=np.int64) if "rows" in f.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        return None


def results_csv(results: dict[str, Any]) -> str:
    """Tidy form: one row per (method, set, metric)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "set", "metric", "value"])
    for method, per_set in results["results"].items():
        for set_name, metrics in per_set.items():
            for k, v in metrics.items():
                w.writerow([method, set_name, k, v])
    for method, per_group in results.get("groups", {}).items():  # a benchmark's group means (near, far)
        for group, metrics in per_group.items():
            for k, v in metrics.items():
                w.writerow([method, f"{group} (mean)", k, v])
    return buf.getvalue()


def begin_results(run: Run) -> None:
    """Mark ``results.json`` as being rewritten (keeping what it held), before any score or fit changes; a
    finished evaluation's table is first copied to ``earlier-results/`` (:func:`keep_table`)."""
    f = run.file(RESULTS)
    try:
        old = read_json(f, "") if f.is_file() else {}
    except RunError:
        old = {}
    old = old if isinstance(old, dict) else {}
    # whether the thresholds it holds were a finished evaluation's (only those are kept for methods not rerun)
    before = "stopped" if old.get("state") == "running" else old.get("state")
    kept = keep_table(run) if before == "complete" else old.get("earlier_table")
    atomic_write_json(f, {**old, "state": "running", "before": before, "earlier_table": kept})


def keep_table(run: Run, table: str = RESULTS) -> str:
    """Copy the finished ``results.json`` (or ``validation.json``, ``localization.json``) and its ``.csv`` or
    ``.png`` to ``earlier-results/<its name>-<time it was written>``, so a second evaluation (another
    ``--fpr-convention``, other sets) adds a table rather than losing the first; the copy's path, relative to the run."""
    f = run.file(table)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(f.stat().st_mtime))
    n, name = 1, f"{f.stem}-{stamp}"
    while (run.path / EARLIER / f"{name}.json").exists():
        n += 1
        name = f"{f.stem}-{stamp}-{n}"
    for src in (f, f.with_suffix(".csv"), f.with_suffix(".png")):
        if src.is_file():
            atomic_write_bytes(run.path / EARLIER / f"{name}{src.suffix}", src.read_bytes())
    return f"{EARLIER}/{name}.json"


def measured_on(classifier: str, id_dataset: str, image_size: int) -> dict[str, Any]:
    """What every method's threshold depends on beside its own settings (``threshold_context``): the classifier's
    fingerprint, the ID set whose test images it keeps and the resolution they were scored at."""
    return {"classifier": classifier, "id_dataset": id_dataset, "image_size": image_size}


def threshold_differs(results: dict[str, Any], method: str, now: dict[str, Any], only: bool = False) -> str | None:
    """None when ``method``'s stored threshold was measured under ``now`` (its context and settings, as
    :func:`measured_on` and the method's settings give them), else ``"set with k 5, this scoring uses k 1"``.
    ``only``: compare the keys of ``now`` alone."""
    then = {**_of(results, "threshold_context", method), **_of(results, "threshold_settings", method)}
    keys = differing(then, now, only)
    return f"was set with {said(then, keys)}, this scoring uses {said(now, keys)}" if keys else None


def _of(results: dict[str, Any], key: str, method: str) -> dict[str, Any]:
    per = results.get(key)
    value = per.get(method) if isinstance(per, dict) else None
    return value if isinstance(value, dict) else {}


def recorded_decoders(results: dict[str, Any], method: str) -> list[str]:
    """The flattened settings of ``method`` that are a decoder's fingerprint (the heatmap's, a combination's part)."""
    return [k for k in flatten(_of(results, "threshold_settings", method)) if k == "decoder" or k.endswith(".decoder")]


def keep_earlier(run: Run, results: dict[str, Any]) -> None:
    """Carry the thresholds of methods this evaluation did not run from the previous ``results.json``, with
    what they were set under: their score files stay in the run, so dropping them would leave scores without a
    threshold. Only when the ID draw is the one they kept 95% of; their table rows stay in that evaluation."""
    f = run.file(RESULTS)
    try:
        old = read_json(f, "") if f.is_file() else None
    except RunError:
        return
    if not isinstance(old, dict) or old.get("before") != "complete" or not all(isinstance(old.get(k), dict) for k in ("thresholds", "threshold_settings", "draw")):
        return
    earlier = [m for m in old["thresholds"] if m not in results["thresholds"]]
    if not earlier:
        return
    if old.get("n_id") != results["n_id"] or old["draw"].get("id") != results["draw"]["id"]:
        results["notes"].append(f"{', '.join(earlier)}: thresholds dropped, they were set on another draw of ID test images; "
                                f"evaluate them again with --methods")
        return
    kept = [m for m in earlier if isinstance(_of(old, "threshold_context", m).get("classifier"), str)]
    for key in ("thresholds", "threshold_settings", "threshold_context", "fits"):
        for m in kept:
            if isinstance(old.get(key), dict) and m in old[key]:
                results.setdefault(key, {})[m] = old[key][m]
    if kept:
        results["kept_from_earlier"] = kept
        results["notes"].append(f"{', '.join(kept)}: thresholds kept from an earlier evaluation (this one did not run "
                                f"them); their table is that evaluation's")


def _of_running(run: Run) -> dict[str, Any]:
    """What :func:`begin_results` left in ``results.json`` for the evaluation now finishing (empty if unreadable)."""
    try:
        old = read_json(run.file(RESULTS), "")
    except RunError:
        return {}
    return old if isinstance(old, dict) and old.get("state") == "running" else {}


def write_results(run: Run, results: dict[str, Any], validation: bool = False) -> Path:
    """The last write of an evaluation: the table as JSON and CSV (``validation.*`` for the validation split).
    ``results.json`` gains ``"state": "complete"``: from now on its thresholds and scores may be read."""
    name = VALIDATION if validation else RESULTS
    if validation:  # no running state to keep it in: the validation table before is copied now
        earlier = keep_table(run, VALIDATION) if run.file(VALIDATION).is_file() else None
    else:
        keep_earlier(run, results)
        earlier = _of_running(run).get("earlier_table")
    if isinstance(earlier, str):
        results["earlier_table"] = earlier
        results["notes"].append(f"this replaces the table of the evaluation before; that one is kept in {run.path / earlier}")
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

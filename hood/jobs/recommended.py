"""Which detector a run scores with when none is named: the recommended one that was evaluated on it, so the
verdicts come with the threshold ``hood evaluate`` stored; the paper's heatmap when none was."""

from __future__ import annotations

from hood.errors import RunError
from hood.jobs.results import read_results
from hood.runs import Run

# best first, as docs/quality.md measures them: the combination of heatmap, ViM and SCALE, then without SCALE
RECOMMENDED = ("heatmap+vim+scale", "heatmap+vim", "heatmap")


def default_method(run: Run) -> tuple[str, str]:
    """``(method, why)``: the first of :data:`RECOMMENDED` with a threshold in the run, else the paper's heatmap
    (a decoder run never evaluated), else the first method the run was evaluated with."""
    results = read_results(run) or {}
    evaluated = list(results.get("thresholds") or {})
    for method in RECOMMENDED:
        if method in evaluated:
            why = "the recommended method" if method == RECOMMENDED[0] else f"the best of {', '.join(RECOMMENDED)} evaluated"
            return method, f"{why} on this run"
    if run.file("decoder.pt").is_file():
        return "heatmap", "the paper's method: none of the recommended ones is evaluated on this run"
    if evaluated:
        return evaluated[0], "the first method evaluated on this run"
    raise RunError(f"{run.path} holds neither a decoder nor evaluation results; name a method (--method, or method= in Python)")

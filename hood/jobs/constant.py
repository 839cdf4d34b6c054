"""Detectors whose scores are one value over a whole set: they tell none of its images apart, so their figures
there are chance (AUROC 50%) and their verdicts the same for every image. A decoder trained for a few epochs
draws the same blank heatmap on everything; a table that showed its 100.0 / 50.0 without a word would read as
a measurement. ``evaluate`` records them in ``results.json`` (``constant``) with a note under the table, and
``hood score`` repeats the note for the method it scores with. A decoder that training left with stuck pixels
or with a noise floor it could not apply (``run.json``) is named beside the heatmap methods' figures too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hood.detectors import Combination, parts_of, uses_decoder


def is_constant(scores: np.ndarray) -> bool:
    """One value for every image of a set of at least two."""
    return len(scores) > 1 and bool(np.all(scores == scores[0]))


class ConstantScores:
    """The sets over which each method (and each combination's part) scored every image the same."""

    def __init__(self) -> None:
        self.sets: dict[str, list[str]] = {}
        self.values: dict[str, float] = {}

    def add(self, set_name: str, scores: Mapping[str, np.ndarray]) -> None:
        """Each method's scores of one set, as ``evaluate`` computes them (parts included)."""
        for m, s in scores.items():
            if is_constant(s):
                self.sets.setdefault(m, []).append(set_name)
                self.values[m] = float(s[0])

    def record(self, results: dict[str, Any], methods: list[str], combos: Mapping[str, Combination]) -> None:
        """``results["constant"]`` (method -> sets) and a note per method the table shows."""
        shown = {m: sets for m, sets in self.sets.items() if m in methods}
        if self.sets:  # the combinations' parts too: score names a combination whose part is constant
            results["constant"] = dict(self.sets)
        for m, sets in shown.items():
            results["notes"].append(constant_note(m, sets, self.values[m]))
        for m, c in combos.items():
            flat = [p for p in c.parts if "id" in self.sets.get(p, [])]
            if m in methods and m not in shown and flat:
                rest = ", ".join(p for p in c.parts if p not in flat)
                results["notes"].append(f"{m}: its {', '.join(flat)} part scores every ID test image the same, so it ranks "
                                        f"images as {rest} alone{_why(flat[0])}")


def constant_note(method: str, sets: list[str], value: float) -> str:
    """The note for ``method``, constant over ``sets``."""
    return (f"{method} scores every image of {_where(sets)} the same ({value:.4g}): it tells none of them apart, so its "
            f"figures there are chance and its verdicts the same for all{_why(method)}")


def _where(sets: list[str]) -> str:
    return sets[0] if len(sets) == 1 else f"{', '.join(sets[:-1])} and {sets[-1]}"


def _why(method: str) -> str:
    """What helps, where the decoder is what draws the same on everything."""
    return "; its decoder draws the same heatmap on every image: train it longer (more decoder.epochs)" \
        if uses_decoder([method]) else ""


def scoring_notes(results: dict[str, Any] | None, method: str, scores: list[float]) -> list[str]:
    """What ``hood score`` says of a constant ``method``: that ``evaluate`` found it so (``results``), or that every
    image scored now has one score."""
    found = (results or {}).get("constant")
    found = found if isinstance(found, dict) else {}
    if sets := found.get(method):
        return [f"{method} scored every image of {_where(sets)} the same when the run was evaluated: its verdicts tell images "
                f"apart no better than chance; pick another --method{_why(method)}"]
    flat = [p for p in parts_of(method) if p != method and "id" in (found.get(p) or [])]
    if flat:
        return [f"{method}: its {', '.join(flat)} part scored every ID test image the same when the run was evaluated, "
                f"so it ranks images by its other parts alone{_why(flat[0])}"]
    if is_constant(np.asarray(scores)):
        return [f"{method} scores all {len(scores)} images the same ({scores[0]:.4g}): its verdicts do not tell them "
                f"apart{_why(method)}"]
    return []


def decoder_notes(info: dict[str, Any], methods: list[str]) -> list[str]:
    """What ``run.json`` says of a decoder the heatmap ``methods`` read: pixels stuck on every ID image, a noise
    floor not applied because it would have erased every heatmap. Both mean a decoder trained too briefly."""
    if not uses_decoder(methods):
        return []
    out = []
    stuck = info.get("stuck_pixels")
    if isinstance(stuck, dict) and isinstance(stuck.get("pixels"), int) and stuck["pixels"] > 0:
        out.append(f"the decoder has {stuck['pixels']} of {stuck.get('of', '?')} heatmap pixels stuck on every ID image "
                   f"(run.json): the heatmap figures carry them; train it longer (more decoder.epochs)")
    floor = info.get("noise_floor")
    if isinstance(floor, dict) and isinstance(floor.get("refused"), str):
        out.append(f"the decoder keeps no noise floor: {floor['refused']}")
    return out

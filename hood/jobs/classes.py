"""Class names for predictions: the classifier checkpoint's own, else those of the ID set its decoder was trained
on (a checkpoint saved by other code, such as the paper authors', holds no names), else the class indices."""

from __future__ import annotations

from typing import Any

from hood.runs import Run

RUN_KEY = "classes"  # run.json of a train-decoder run: the names it knows, recorded while the ID set is loaded


def names_to_record(checkpoint_classes: list[str] | None, id_classes: list[str] | None, num_classes: int) -> list[str] | None:
    """What a train-decoder run records: the checkpoint's names, else the ID set's when they count the same."""
    for names in (checkpoint_classes, id_classes):
        if names and len(names) == num_classes:
            return [str(n) for n in names]
    return None


def class_names(checkpoint_classes: list[str] | None, num_classes: int, run: Run | None = None) -> list[str]:
    """The names predictions are shown with; see the module docstring for the order."""
    recorded: Any = run.info.get(RUN_KEY) if run is not None else None
    for names in (checkpoint_classes, recorded):
        if isinstance(names, list) and len(names) == num_classes:
            return [str(n) for n in names]
    return [str(i) for i in range(num_classes)]

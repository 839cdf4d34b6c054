"""What one ``hood evaluate`` scores: the ID rows the detectors fit on, the ID set (already drawn), the OOD sets
(loaded one at a time) and how many images of each. The test sets' plan is here; the validation split's is
:mod:`hood.jobs.validation`'s; both end in the same draw rule (:func:`finish`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hood.config import Config
from hood.data.draw import draw, draw_rows
from hood.data.images import ImageSet
from hood.data.sources import dataset_label, load_image_set
from hood.data.validation import id_test_halves, positions_in


@dataclass
class Plan:
    fit: ImageSet  # the ID training rows the detectors fit on
    decoder_rows: torch.Tensor | None  # rows of ``fit`` the decoder trained on: kept out of the combinations' statistics
    id: ImageSet
    ood: list[tuple[str, Callable[[], ImageSet]]]
    ood_count: int | None = None  # images per OOD set; None = all of each
    validation: dict[str, Any] | None = None  # how the validation split was made; None for the test sets
    id_rows: torch.Tensor | None = None  # the ID set's scored rows (of the whole split it comes from)
    id_size: int = 0  # its size before the draw
    id_half: dict[str, Any] | None = None  # how the ID test split was halved (data.val_id_source: test)
    benchmark: dict[str, Any] | None = None  # the named protocol's record (hood/jobs/benchmark.py), None without one
    fit_draw: dict[str, int] | None = None  # how ``fit`` was drawn from a larger training split (:func:`cap_fit`)
    fit_rows: torch.Tensor | None = None  # the rows of the training split ``fit`` holds, in its order; None = all of it

    @property
    def prefix(self) -> str:
        """Of score files: validation scores never overwrite the test scores."""
        return "val-" if self.validation is not None else ""


def test_plan(cfg: Config, splits: dict[str, ImageSet], decoder_rows: torch.Tensor | None, root: Path, size: int) -> Plan:
    """The ID test split (its test half with ``data.val_id_source: test``, whose other half validates) against
    every OOD test set of ``data.ood``."""
    sets = [(dataset_label(spec), lambda spec=spec: load_image_set(spec, root, size, cfg.data.strict)) for spec in cfg.data.ood]
    plan = Plan(fit=splits["train"], decoder_rows=decoder_rows, id=splits["test"], ood=sets)
    if cfg.data.val_id_source == "test":
        halves = id_test_halves(len(splits["test"]), cfg.data.ood_draw_seed)
        plan.id, plan.id_rows = splits["test"].subset(halves[1]), halves[1]
        plan.id_half = {"half": "test", "half_seed": cfg.data.ood_draw_seed}
    return finish(plan, cfg)


def cap_fit(plan: Plan, count: int | None, seed: int) -> None:
    """``evaluate.fit_count``: a seeded draw of that many training rows for the fits, where the split holds more
    (the fit pass over the whole split is most of a first evaluate's time); the decoder's rows are mapped into it."""
    n = len(plan.fit)
    if count is None or n <= count:
        return
    rows = draw_rows(n, count, "random", seed)
    plan.fit = plan.fit.subset(rows)
    plan.fit_rows = rows if plan.fit_rows is None else plan.fit_rows[rows]
    if plan.decoder_rows is not None:
        mapped = positions_in(rows, plan.decoder_rows)
        plan.decoder_rows = mapped[mapped >= 0]
    plan.fit_draw = {"fit_count": count, "fit_seed": seed, "fit_of": n}


def finish(plan: Plan, cfg: Config) -> Plan:
    """The ID draw (``data.id_test_count``) and the OOD count, one rule for test and validation: the protocol's
    len(ID test)/5 images of each test set, all of each validation set, unless ``data.ood_count`` says."""
    plan.id_size = len(plan.id)
    plan.id, rows = draw(plan.id, cfg.data.id_test_count, cfg.data.ood_draw, cfg.data.ood_draw_seed)
    plan.id_rows = rows if plan.id_rows is None else plan.id_rows[rows]
    plan.ood_count = cfg.data.ood_count or (None if plan.validation else max(1, len(plan.id) // 5))
    return plan

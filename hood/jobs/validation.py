"""``hood evaluate --validation``: the split settings are chosen on, never an OOD test set.

ID images the classifier and the decoder never trained on (``data.val_id_source``: half of the ID test split,
or the training images ``hood pretrain`` held out of the classifier), against the auxiliary classes the decoder
run held out of its pool (``data.val_aux_classes``), fresh draws of the built-in synthetic sets among
``data.ood`` and ``data.val_ood``, and the other ``data.val_ood`` sets (hood/data/validation.py says why each).
The detectors fit on the training rows that are not validation images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hood.config import Config
from hood.data.builtin import SYNTHETIC_NAMES, VAL_NOISE_SEED, synthetic_set
from hood.data.images import ImageSet
from hood.data.sources import dataset_label, load_held_out_classes, load_image_set
from hood.data.validation import classifier_held_out_rows, complement, id_test_halves, positions_in
from hood.errors import ConfigError
from hood.jobs.plan import Plan, finish


def validation_plan(cfg: Config, splits: dict[str, ImageSet], decoder_rows: torch.Tensor | None, decoder_config: dict[str, Any],
                    root: Path, size: int, classifier_meta: dict[str, Any], classifier: str, run: Path) -> Plan:
    """The validation split of a run; ``decoder_config`` is the config its decoder was trained with (empty
    without a decoder), which says what that training held out."""
    source = cfg.data.val_id_source
    if source is None:
        raise ConfigError("--validation needs validation ID images the classifier never saw: --set data.val_id_source=test "
                          "(half of the ID test split) or data.val_id_source=classifier (the images hood pretrain held out)")
    data = decoder_config.get("data", {})
    if source == "classifier" and decoder_config and data.get("val_id_source") != "classifier":
        raise ConfigError(f"the decoder of {run} may have trained on the images the classifier held out; train it with "
                          f"--set data.val_id_source=classifier to validate on them, or validate with data.val_id_source=test")
    train, test = splits["train"], splits["test"]
    if source == "test":
        halves = id_test_halves(len(test), cfg.data.ood_draw_seed)
        fit, val_id, id_rows = train, test.subset(halves[0], name=f"{test.name}-val"), halves[0]
        fit_rows: torch.Tensor | None = None  # all of the training split
        described: dict[str, Any] = {"n_test_half": len(halves[1])}  # the size of the half left for the test table
    else:
        kept, held = complement(len(train), classifier_held_out_rows(classifier_meta, len(train), classifier))
        if decoder_rows is not None:  # the combinations' held-out statistics index the fit set, not the whole split
            rows = positions_in(kept, decoder_rows)
            decoder_rows = rows[rows >= 0]
        fit, val_id, id_rows, described = train.subset(kept), train.subset(held, name=f"{train.name}-val"), None, {}
        fit_rows = kept
    ood = _validation_sets(cfg, data, root, size, run)
    described = {"val_id_source": source, "val_aux_classes": int(data.get("val_aux_classes", 0)), "aux": data.get("aux"),
                 "val_ood": list(cfg.data.val_ood), "n_fit": len(fit), **described}
    plan = Plan(fit=fit, decoder_rows=decoder_rows, id=val_id, ood=ood, validation=described, id_rows=id_rows,
                fit_rows=fit_rows)
    if source == "test":
        plan.id_half = {"half": "validation", "half_seed": cfg.data.ood_draw_seed}
    return finish(plan, cfg)


def _validation_sets(cfg: Config, data: dict[str, Any], root: Path, size: int, run: Path) -> list[tuple[str, Callable[[], ImageSet]]]:
    aux_classes, aux = int(data.get("val_aux_classes", 0)), data.get("aux")
    ood: list[tuple[str, Callable[[], ImageSet]]] = []
    if aux_classes > 0 and aux:
        ood.append((f"{dataset_label(aux)}-val", lambda: load_held_out_classes(aux, root, size, aux_classes, cfg.data.strict)))
    # a built-in synthetic set is validated on another seeded draw, so no test image is ever used to choose
    for spec in dict.fromkeys([s for s in cfg.data.ood if s in SYNTHETIC_NAMES] + list(cfg.data.val_ood)):
        if spec in SYNTHETIC_NAMES:
            ood.append((f"{spec}-val", lambda k=spec: synthetic_set(k, size=size, seed=VAL_NOISE_SEED, suffix="-val")))
        else:
            label = dataset_label(spec)
            ood.append((label if label.endswith("-val") else f"{label}-val",
                        lambda spec=spec: load_image_set(spec, root, size, cfg.data.strict)))
    if not ood:
        raise ConfigError(
            f"{run} held out no auxiliary classes, and neither --ood nor data.val_ood names a validation set "
            f"(a synthetic set: {', '.join(SYNTHETIC_NAMES)}; or --set data.val_ood=[FOLDER]); nothing to validate against"
        )
    return ood

"""The rows of the validation split, from config keys instead of hand-made folders.

Settings are chosen on images the classifier and the decoder never trained on and that are no test figure:

- validation ID (``data.val_id_source``): ``test``, a seeded random half of the ID test split, which the test
  table then leaves out (it scores the other half), for any classifier; or ``classifier``, the training images
  ``hood pretrain`` held out of the classifier's own training (``pretrain.val_fraction``), which the decoder
  then never trains on either, and the whole test split stays for the table. A classifier's own training
  images would look more typical to it than any unseen image and flatter every score that reads it;
- validation OOD: the last ``data.val_aux_classes`` class folders of the auxiliary outlier set, held out of the
  pool the decoder samples from (near OOD), and the sets of ``data.val_ood``, which must not be test sets.

:mod:`hood.jobs.validation` scores them (``hood evaluate --validation``).
"""

from __future__ import annotations

from typing import Any

import torch

from hood.data.draw import draw_rows
from hood.data.images import ImageSet
from hood.errors import ConfigError


def classifier_held_out_rows(meta: dict[str, Any], n_train: int, classifier: str) -> torch.Tensor:
    """Sorted training rows that ``hood pretrain`` kept out of the classifier's training (its checkpoint
    records them): ID images the classifier never saw, so their scores are as atypical as a test image's."""
    rows, n = meta.get("held_out_rows"), meta.get("n_train")
    if rows is None or n is None:
        raise ConfigError(
            f"config key 'data.val_id_source' is classifier, but {classifier} does not record which training images it "
            "never saw (classifiers from hood pretrain do); use data.val_id_source=test"
        )
    if int(n) != n_train:
        raise ConfigError(
            f"config key 'data.val_id_source' is classifier, but {classifier} held out rows of a {n}-image training "
            f"split and this ID set has {n_train} training images: pass the data set it was trained on"
        )
    held = torch.as_tensor(list(rows), dtype=torch.long).unique()
    if len(held) == 0 or int(held[0]) < 0 or int(held[-1]) >= n_train:
        raise ConfigError(
            f"config key 'data.val_id_source' is classifier, but {classifier} held out no usable training images "
            "(pretrain.val_fraction 0?); use data.val_id_source=test"
        )
    return held


def id_test_halves(n_test: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(validation rows, test rows)`` of an ``n_test``-image ID test split (``data.val_id_source: test``):
    a random half (rounded down), drawn with ``seed`` as any other draw, is validation; the rest is what the
    test table scores. Both ascending, so reading stays sequential."""
    if n_test < 2:
        raise ConfigError(
            f"config key 'data.val_id_source' is test, but the ID test split has {n_test} image(s); it needs at "
            "least 2 to give half to validation"
        )
    test, validation = complement(n_test, draw_rows(n_test, n_test // 2, "random", seed))
    return validation, test


def decoder_train_rows(train: ImageSet, source: str, classifier_meta: dict[str, Any], classifier: str) -> torch.Tensor:
    """The rows of the ID training split the decoder may train on: all of them, but for the images the
    classifier's pretraining held out when they are the validation ID images (``data.val_id_source: classifier``)."""
    if source == "classifier":
        return complement(len(train), classifier_held_out_rows(classifier_meta, len(train), classifier))[0]
    return torch.arange(len(train))


def complement(n: int, held: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    keep = torch.ones(n, dtype=torch.bool)
    keep[held] = False
    return torch.nonzero(keep).flatten(), held


def positions_in(subset: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Where each of ``rows`` (rows of a split) lies in ``subset`` (distinct rows of the same split), -1 where it
    is not among them: how rows of a whole split are read in a subset of it."""
    size = max((int(t.max()) + 1 for t in (subset, rows) if len(t)), default=0)
    position = torch.full((size,), -1, dtype=torch.long)
    position[subset.long()] = torch.arange(len(subset))
    return position[rows.long()]


def split_aux_classes(pool: ImageSet, classes: int, spec: str) -> tuple[ImageSet, ImageSet]:
    """``(kept for the outlier pool, held out for validation)``: the last ``classes`` class folders
    (in sorted order) go to validation; everything is kept when ``classes`` is 0."""
    if classes <= 0:
        return pool, pool.subset(torch.zeros(0, dtype=torch.long))
    if pool.labels is None or not pool.classes:
        raise ConfigError(
            f"config key 'data.val_aux_classes' needs an auxiliary set in <class>/<image> layout; '{spec}' has no class folders"
        )
    if classes >= len(pool.classes):
        raise ConfigError(
            f"config key 'data.val_aux_classes' is {classes}, but '{spec}' has only {len(pool.classes)} classes; "
            f"keep at least one for training"
        )
    cut = len(pool.classes) - classes
    keep = torch.nonzero(pool.labels < cut).flatten()
    held = torch.nonzero(pool.labels >= cut).flatten()
    return pool.subset(keep), pool.subset(held, name=f"{pool.name}-val")

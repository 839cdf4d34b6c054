"""The validation split, from config keys instead of hand-made folders.

Settings are chosen on data the decoder never trains on and that is not an OOD test set:

- validation ID: the last ``data.val_id_per_class`` training images of every class, held out of decoder
  training (spread evenly over the classes so that a class-sorted folder does not hand all of them to one
  class); or, with ``data.val_id_source: classifier``, the training images ``hood pretrain`` held out of
  the classifier's own training (``pretrain.val_fraction``); or, with ``data.val_id_source: test``, a seeded
  random half of the ID test split, which the test table then leaves out (it scores the other half);
- validation OOD: the last ``data.val_aux_classes`` class folders of the auxiliary outlier set, held out
  of the pool the decoder samples from (near OOD); and the sets of ``data.val_ood``, e.g. far-OOD ones
  such as handwritten characters, which must not be test sets.

``hood train-decoder`` leaves both out; ``hood evaluate --validation`` scores exactly them (plus a fresh
draw of any built-in noise set among the OOD sets) and never touches an OOD test set. Caveat: the
classifier was trained on its training images, so validation ID images look more typical to it than
unseen test images do; figures on this split are optimistic for every feature-based score.
``data.val_id_source: classifier`` removes that bias for a classifier trained by ``hood pretrain``, and
``data.val_id_source: test`` for any classifier, at the price of half the ID test images.
"""

from __future__ import annotations

from typing import Any

import torch

from hood.data.draw import draw_rows
from hood.data.images import ImageSet
from hood.errors import ConfigError


def held_out_id_rows(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """Sorted rows of the last ``per_class`` images of every class (in the split's own order)."""
    rows = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        if len(members) <= per_class:
            raise ConfigError(
                f"config key 'data.val_id_per_class' is {per_class}, but class {c} has only {len(members)} "
                f"training images; hold out fewer"
            )
        rows.append(members[len(members) - per_class :])
    return torch.cat(rows).sort().values if rows else torch.zeros(0, dtype=torch.long)


def split_rows(train: ImageSet, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows kept for decoder training, held-out validation rows)`` of the ID training split."""
    if per_class <= 0:
        return torch.arange(len(train)), torch.zeros(0, dtype=torch.long)
    if train.labels is None:
        raise ConfigError("config key 'data.val_id_per_class' needs an ID set with class folders")
    return _complement(len(train), held_out_id_rows(train.labels, per_class))


def classifier_held_out_rows(meta: dict[str, Any], n_train: int, classifier: str) -> torch.Tensor:
    """Sorted training rows that ``hood pretrain`` kept out of the classifier's training (its checkpoint
    records them): ID images the classifier never saw, so their scores are as atypical as a test image's."""
    rows, n = meta.get("held_out_rows"), meta.get("n_train")
    if rows is None or n is None:
        raise ConfigError(
            f"config key 'data.val_id_source' is classifier, but {classifier} does not record which training images it "
            "never saw (classifiers from hood pretrain do); use data.val_id_source=last with data.val_id_per_class"
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
            "(pretrain.val_fraction 0?); use data.val_id_source=last with data.val_id_per_class"
        )
    return held


def id_test_halves(n_test: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(validation rows, test rows)`` of an ``n_test``-image ID test split (``data.val_id_source: test``):
    a random half (rounded down), drawn with ``seed`` as any other draw, is validation; the rest is what the
    test table scores. Both ascending, so reading stays sequential."""
    if n_test < 2:
        raise ConfigError(
            f"config key 'data.val_id_source' is test, but the ID test split has {n_test} image(s); it needs at "
            "least 2 to give half to validation (use data.val_id_source=last with data.val_id_per_class)"
        )
    test, validation = _complement(n_test, draw_rows(n_test, n_test // 2, "random", seed))
    return validation, test


def validation_rows(train: ImageSet, source: str, per_class: int, classifier_meta: dict[str, Any],
                    classifier: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows kept for decoder training, held-out training rows)`` by ``data.val_id_source``: the last
    ``per_class`` images of every class (``last``, and ``test``, whose validation ID images are test images
    but whose decoder may still hold training rows out), or the images the classifier's pretraining held out."""
    if source == "classifier":
        return _complement(len(train), classifier_held_out_rows(classifier_meta, len(train), classifier))
    return split_rows(train, per_class)


def _complement(n: int, held: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    keep = torch.ones(n, dtype=torch.bool)
    keep[held] = False
    return torch.nonzero(keep).flatten(), held


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

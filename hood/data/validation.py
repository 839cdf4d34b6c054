"""The validation split of issue 7's protocol, from config keys instead of hand-made folders.

Settings are chosen on data the decoder never trains on and that is not an OOD test set:

- validation ID: the last ``data.val_id_per_class`` training images of every class, held out of decoder
  training (the issue's "last 1,000 CIFAR-10 training images", spread evenly over the classes so that a
  class-sorted folder does not hand all of them to one class);
- validation OOD: the last ``data.val_aux_classes`` class folders of the auxiliary outlier set, held out
  of the pool the decoder samples from (the issue's "a fifth of tin32-pool's 80 classes").

``hood train-decoder`` leaves both out; ``hood evaluate --validation`` scores exactly them (plus any
built-in noise set among the OOD sets) and never touches an OOD test set. Caveat (measured,
bench/QUALITY.md, "the heatmap's ID tail"): the classifier was trained on its training images, so
validation ID images look more typical to it than unseen test images do; figures on this split are
optimistic for every feature-based score.
"""

from __future__ import annotations

import torch

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
    held = held_out_id_rows(train.labels, per_class)
    keep = torch.ones(len(train), dtype=torch.bool)
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

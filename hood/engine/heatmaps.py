"""The decoder's heatmaps of a feature set, one batch at a time: the one loop every heatmap reader uses."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from hood.engine.features import FeatureSet
from hood.engine.runtime import autocast
from hood.models.decoder import HeatmapDecoder


def heatmap_batches(decoder: HeatmapDecoder, feats: FeatureSet, device: torch.device,
                    batch_size: int = 500) -> Iterator[torch.Tensor]:
    """Heatmaps of ``feats`` in row order, ``batch_size`` rows at a time (float32, CPU), so that memory stays
    bounded by one batch however many rows there are. The caller sets the decoder's mode and grad context."""
    for s in range(0, len(feats), batch_size):
        part = feats.take(torch.arange(s, min(s + batch_size, len(feats)))).to(device)
        with autocast(device):
            h = decoder(part.features, part.preds, part.maps)
        yield h.float().cpu()

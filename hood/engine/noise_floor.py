"""The decoder's noise floor: the heatmap magnitude it draws on ID images anyway.

A decoder trained briefly does not draw zero on ID images: its output there is low-level speckle over the
whole image, as bright on images it trained on as on unseen ones, and the paper's score (the pixel mean of
the channel-max of ``|h|``) adds that speckle up. The floor is a high quantile of the per-pixel channel-max
``|h|`` over ID images the decoder did not train on; subtracted from every pixel (never below 0), it leaves
ID heatmaps dark and keeps on OOD images the pixels that stand out (docs/method.md, "Noise floor").
"""

from __future__ import annotations

import torch

from hood.engine.features import FeatureSet
from hood.engine.heatmaps import heatmap_batches, raw_heatmaps
from hood.models.decoder import HeatmapDecoder

FLOOR_IMAGES = 2000  # ID images the floor is measured on: 2M pixel magnitudes at 32x32
# A floor this high sits at the brightness of stuck pixels (engine/heatmaps.py, STUCK_MAGNITUDE): taken off every
# pixel it leaves only saturated ones, and on a decoder trained for a few epochs (ID heatmaps lit everywhere,
# a measured floor of 1.000) nothing at all, so every image would score 0.
MAX_FLOOR = 0.9
_PIXELS = 4_000_000  # per-pixel magnitudes kept for the quantile (torch.quantile takes at most 16M values)


@torch.inference_mode()
def measure_noise_floor(decoder: HeatmapDecoder, feats: FeatureSet, quantile: float, device: torch.device,
                        batch_size: int = 500) -> float:
    """The ``quantile`` of the per-pixel channel-max ``|h|`` of the raw heatmaps of ``feats`` (ID rows)."""
    if not 0 < quantile < 1:
        raise ValueError(f"the noise floor quantile must be in (0, 1), got {quantile}")
    if len(feats) == 0:
        raise ValueError("the noise floor needs ID images")
    mags = []
    with raw_heatmaps(decoder, device):
        for h in heatmap_batches(decoder, feats, device, batch_size):
            mags.append(h.abs().amax(dim=1).flatten())
    values = torch.cat(mags)
    if len(values) > _PIXELS:  # an evenly spaced subsample: the quantile of millions of pixels barely moves
        values = values[torch.linspace(0, len(values) - 1, _PIXELS).long()]
    return float(torch.quantile(values, quantile))


def erasing_floor(value: float, quantile: float) -> str | None:
    """Why a measured floor is not applied (it would erase the heatmaps), or None when it may be."""
    if value < MAX_FLOOR:
        return None
    return (f"the noise floor measured {value:.3f} (the {quantile:.4g} quantile of ID heatmap pixels) would erase every "
            f"heatmap, so none is applied (the paper's heatmap): the decoder's ID heatmaps are still lit almost "
            f"everywhere, i.e. it is undertrained; train it longer (more decoder.epochs)")

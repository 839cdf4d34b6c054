"""The paper's detector: the decoder's heatmap (less its noise floor, when it has one: docs/method.md), scored
as the pixel mean of its channel-max of |h|."""

from __future__ import annotations

import numpy as np
import torch

from hood.detectors.base import Detector, DetectorContext, register
from hood.engine.features import FeatureSet
from hood.engine.heatmaps import heatmap_batches
from hood.models.decoder import HeatmapDecoder, heatmap_score


class HeatmapDetector(Detector):
    name = "heatmap"

    def __init__(self, decoder: HeatmapDecoder, device: torch.device, batch_size: int = 500) -> None:
        self.decoder = decoder.to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.num_maps = decoder.spec.fw_layers - 1

    @torch.inference_mode()
    def heatmaps(self, feats: FeatureSet, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Heatmaps of rows ``start:stop`` (float32, CPU), for pictures."""
        sub = feats.take(torch.arange(start, stop if stop is not None else len(feats)))
        return torch.cat(list(heatmap_batches(self.decoder, sub, self.device, self.batch_size)))

    @torch.inference_mode()
    def score(self, feats: FeatureSet) -> np.ndarray:
        return torch.cat([heatmap_score(h) for h in heatmap_batches(self.decoder, feats, self.device, self.batch_size)]).numpy()


@register("heatmap", needs_decoder=True)
def _build(ctx: DetectorContext) -> Detector:
    if ctx.decoder is None:
        raise ValueError("the heatmap detector needs a trained decoder")
    return HeatmapDetector(ctx.decoder, ctx.device)  # type: ignore[arg-type]

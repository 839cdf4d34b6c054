"""The decoder's heatmaps of a feature set, one batch at a time: the one loop every heatmap reader uses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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


# A pixel at least this bright on every ID image is stuck. On healthy decoders the dimmest raw value per
# pixel over 500 ID images stays near 0 (under 0.1 in the CIFAR-10 runs of docs/quality.md); a stuck one sits at 1.
STUCK_MAGNITUDE = 0.9
STUCK_CHECK_IMAGES = 500  # ID training rows the check reads: enough that no healthy pixel is lit on all


@contextmanager
def raw_heatmaps(decoder: HeatmapDecoder, device: torch.device) -> Iterator[HeatmapDecoder]:
    """The decoder on ``device`` in eval mode drawing its raw heatmap (no noise floor), for measurements of
    what training left; its mode and floor are restored afterwards."""
    was_training, saved = decoder.training, decoder.noise_floor.clone()
    decoder.to(device).eval()
    decoder.noise_floor.zero_()
    try:
        yield decoder
    finally:
        decoder.noise_floor.copy_(saved)
        decoder.train(was_training)


@torch.inference_mode()
def stuck_pixels(decoder: HeatmapDecoder, feats: FeatureSet, device: torch.device, batch_size: int = 500) -> int:
    """Pixels whose raw channel-max ``|h|`` is at least :data:`STUCK_MAGNITUDE` on every row of ``feats``.

    Why it matters: the target on ID images is ``h = 0``, and a pixel that ``tanh`` drove into saturation
    early in training gets almost no gradient back out, so it stays lit on every image, ID or not: a
    constant added to every score and a bright pattern on every picture. The floor is left out (it would
    hide what training left), and the decoder is left as it was.
    """
    least: torch.Tensor | None = None
    with raw_heatmaps(decoder, device):
        for h in heatmap_batches(decoder, feats, device, batch_size):
            dimmest = h.abs().amax(dim=1).amin(dim=0)
            least = dimmest if least is None else torch.minimum(least, dimmest)
    return 0 if least is None else int((least >= STUCK_MAGNITUDE).sum())


def stuck_warning(pixels: int, of: int, retrain: str) -> str:
    """The one-line warning for a decoder with stuck pixels; ``retrain`` names how to draw another one."""
    return (f"{pixels} of {of} heatmap pixels stay lit on every ID image the decoder trained on: its training got "
            f"stuck there, so they add the same brightness to every score and picture; {retrain}")

"""``heatmap+energy``: the paper's heatmap score and the energy score, each standardized on ID data, summed.

Why a combination: the two look at different things. The heatmap reads the classifier's features
through a decoder trained on outliers; energy reads the logits. On the shared fixtures the heatmap is
weak where the logits are already telling (and vice versa), so a sum of the two, each put on the
scale of its own ID spread, ranks OOD images better than either alone (issue 7's validation runs).
It is a method of its own, not a change to ``heatmap``: the paper's score stays as published.

Standardization: ``z_i(x) = (s_i(x) - mu_i) / sigma_i`` with ``mu_i, sigma_i`` taken over (at most
``_FIT_ROWS``, seeded) ID training images; the score is ``z_heatmap + z_energy``. The mean only shifts
every score alike; the spreads set the relative weight. The fit depends on the decoder, so its
fingerprint is part of the parameters and a retrained decoder is refitted, never served a stale fit.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from hood.detectors.base import Detector, DetectorContext, energy, register
from hood.detectors.heatmap import HeatmapDetector
from hood.engine.features import FeatureSet

_FIT_ROWS = 10_000  # enough for a mean and a spread; bounds the decoder pass over the ID training set


def decoder_fingerprint(decoder: torch.nn.Module) -> str:
    """A short hash of the decoder's weights and buffers: what a cached fit on its scores depends on."""
    h = hashlib.sha256()
    for name, t in sorted(decoder.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class HeatmapEnergyDetector(Detector):
    name = "heatmap+energy"
    needs_fit = True

    def __init__(self, heatmap: HeatmapDetector, seed: int = 0) -> None:
        self.heatmap = heatmap
        self.num_maps = heatmap.num_maps
        self.seed = seed
        self.fingerprint = decoder_fingerprint(heatmap.decoder)
        self.mean: torch.Tensor | None = None  # (heatmap, energy)
        self.std: torch.Tensor | None = None

    def params(self) -> dict[str, Any]:
        return {"decoder": self.fingerprint, "fit_rows": _FIT_ROWS, "seed": self.seed}

    def _components(self, feats: FeatureSet) -> torch.Tensor:
        """N x 2 float64: the heatmap score and the energy score, both larger = more OOD."""
        h = torch.from_numpy(self.heatmap.score(feats)).double()
        return torch.stack([h, energy(feats.logits, 1.0)], dim=1)

    def fit(self, id_train: FeatureSet) -> None:
        n = len(id_train)
        if n > _FIT_ROWS:
            g = torch.Generator().manual_seed(self.seed)
            id_train = id_train.take(torch.randperm(n, generator=g)[:_FIT_ROWS].sort().values)
        s = self._components(id_train)
        self.mean = s.mean(0)
        # a component constant on ID data (degenerate decoder) must not divide by zero: unit spread
        std = s.std(0) if len(s) > 1 else torch.ones(2, dtype=torch.float64)
        self.std = torch.where(std > 0, std, torch.ones_like(std))

    def score(self, feats: FeatureSet) -> np.ndarray:
        if self.mean is None or self.std is None:
            raise RuntimeError("heatmap+energy is not fitted")
        return ((self._components(feats) - self.mean) / self.std).sum(1).numpy()

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std = state["mean"].double(), state["std"].double()


@register("heatmap+energy", needs_decoder=True)
def _build(ctx: DetectorContext) -> Detector:
    if ctx.decoder is None:
        raise ValueError("heatmap+energy needs a trained decoder")
    cfg = ctx.options.get("config")
    seed = int(getattr(getattr(cfg, "run", None), "seed", 0) or 0)
    return HeatmapEnergyDetector(HeatmapDetector(ctx.decoder, ctx.device), seed)  # type: ignore[arg-type]

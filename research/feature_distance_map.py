"""Pixel AUROC / AUPRO on validation composites of a per-location feature-distance map (PaDiM's reading of the
classifier's stage maps: at each location, the Mahalanobis distance of the stage features to a Gaussian fitted
at that location on ID training images), alone and summed with the smoothed heatmap, to see whether the
classifier's own stage features localize foreign regions better than the decoder does.

    python research/feature_distance_map.py RUN --dataset CIFAR10.tar.gz [--val-ood omniglot-val.tar.gz] [--fit 5000]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from composite_setup import arguments, open_validation, print_means, score_maps

from hood.detectors.pixel_maps import gaussian_blur
from hood.engine.features import extract_features
from hood.engine.heatmaps import raw_heatmaps
from hood.engine.runtime import resolve_device

SHRINK = 0.01  # PaDiM's identity term, so each location's covariance inverts


def fit_locations(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per location of ``N x C x H x W`` maps: the mean (``HW x C``) and inverse covariance (``HW x C x C``)."""
    x = maps.float().flatten(2).permute(2, 0, 1)  # HW x N x C
    mu = x.mean(1)
    d = x - mu[:, None]
    cov = d.transpose(1, 2) @ d / (x.shape[1] - 1) + SHRINK * torch.eye(x.shape[2])
    return mu, torch.linalg.inv(cov)


def distance(maps: torch.Tensor, mu: torch.Tensor, inv: torch.Tensor, size: int) -> torch.Tensor:
    """``N x size x size``: each location's Mahalanobis distance, bilinearly upsampled to the image."""
    n, c, h, w = maps.shape
    out = []
    for s in range(0, n, 250):
        x = maps[s : s + 250].float().flatten(2).permute(2, 0, 1) - mu[:, None]  # HW x n x C
        d2 = torch.einsum("lnc,lcd,lnd->ln", x, inv, x).clamp(min=0).sqrt()
        out.append(d2.T.reshape(-1, 1, h, w))
    return F.interpolate(torch.cat(out), size=(size, size), mode="bilinear", align_corners=False)[:, 0]


def main() -> None:
    ap = arguments(__doc__.split("\n\n")[0])
    ap.add_argument("--fit", type=int, default=5000)
    a = ap.parse_args()
    torch.manual_seed(0)
    v = open_validation(a.run, a.dataset, a.val_ood)
    clf, det, plan, decoder = v.classifier, v.detector, v.plan, v.detector._decoder()
    device = resolve_device("cpu")
    num_maps = max(det.num_maps, 3)
    size = v.cfg.data.image_size
    fit_rows = torch.randperm(len(plan.fit))[: a.fit]
    fit = extract_features(clf.model, plan.fit.images[fit_rows], device, 500, num_maps)
    stages = [fit_locations(m) for m in fit.maps]  # type: ignore[union-attr]
    del fit

    def maps_of(images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = extract_features(clf.model, images, device, 500, num_maps)
        with raw_heatmaps(decoder, device):
            h = gaussian_blur(det.heatmaps_of(feats).abs().amax(1), 2.0)
        per = [distance(m, mu, inv, size) for m, (mu, inv) in zip(feats.maps, stages, strict=True)]  # type: ignore[arg-type]
        return {"h": h, **{f"s{i}": d for i, d in enumerate(per)}}

    id_maps = maps_of(plan.id.images)
    stats = {k: (v.mean(), v.std()) for k, v in id_maps.items()}
    del id_maps
    out = {}
    for name, comp in v.composites(a.count):
        m = maps_of(comp.images)
        z = {k: (v - stats[k][0]) / stats[k][1] for k, v in m.items()}
        stage_keys = [k for k in z if k.startswith("s")]
        fd = sum(z[k] for k in stage_keys)
        variants = {"heatmap-smoothed": m["h"], **{f"stage{k[1:]}": m[k] for k in stage_keys}, "feature-distance": fd,
                    "feature-distance-gauss2": gaussian_blur(fd, 2.0), "z-h+fd": z["h"] + fd / len(stage_keys),
                    "z-h+fd-deep2": z["h"] + sum(z[k] for k in stage_keys[-2:]) / 2}
        score_maps(name, variants, comp, out)
    print_means(out)


if __name__ == "__main__":
    main()

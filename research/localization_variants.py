"""Pixel AUROC / AUPRO of variants of a decoder's heatmap on validation composites, to choose how a localizing
map is read without looking at a test set: the map as drawn, without the noise floor, Gaussian-smoothed (σ 1 to
4), read relative to its own image (less its median, over its mean, z-scored within the image), and summed with
the class-mean map (each standardized on the validation ID images). The composites are those of ``hood evaluate --localization --validation`` (same seed rule).

    python research/localization_variants.py RUN --dataset CIFAR10.tar.gz [--val-ood omniglot-val.tar.gz] [--count 1000]
"""

from __future__ import annotations

from composite_setup import arguments, open_validation, print_means, score_maps

from hood.detectors.pixel_maps import class_mean_distance_map, class_mean_images, gaussian_blur, heatmap_map
from hood.engine.features import extract_features
from hood.engine.heatmaps import raw_heatmaps
from hood.engine.runtime import resolve_device


def main() -> None:
    ap = arguments(__doc__.split("\n\n")[0])
    a = ap.parse_args()
    v = open_validation(a.run, a.dataset, a.val_ood)
    clf, det, plan, decoder = v.classifier, v.detector, v.plan, v.detector._decoder()
    device = resolve_device("cpu")
    train = plan.fit
    means = class_mean_images(train.images, train.labels, 10)
    # each map's pooled pixel statistics on the plain validation ID images: the scale a combination reads
    id_feats = extract_features(clf.model, plan.id.images, device, 500, det.num_maps)
    with raw_heatmaps(decoder, device):
        id_raw = gaussian_blur(det.heatmaps_of(id_feats).abs().amax(1), 2.0)
    id_cm = gaussian_blur(class_mean_distance_map(plan.id.images, id_feats.preds.cpu(), means), 2.0)
    stats = {"h": (id_raw.mean(), id_raw.std()), "cm": (id_cm.mean(), id_cm.std())}
    del id_feats
    out = {}
    for name, comp in v.composites(a.count):
        feats = extract_features(clf.model, comp.images, device, 500, det.num_maps)
        drawn = heatmap_map(det, feats)
        with raw_heatmaps(decoder, device):
            raw = det.heatmaps_of(feats).abs().amax(1)
        g2 = gaussian_blur(raw, 2.0)
        cm = class_mean_distance_map(comp.images, feats.preds.cpu(), means)
        cm2 = gaussian_blur(cm, 2.0)
        zh = (g2 - stats["h"][0]) / stats["h"][1]
        zc = (cm2 - stats["cm"][0]) / stats["cm"][1]
        flat = g2.flatten(1)
        variants = {"drawn": drawn, "raw": raw, "raw-gauss1": gaussian_blur(raw, 1.0), "raw-gauss2": g2,
                    "raw-gauss3": gaussian_blur(raw, 3.0), "raw-gauss4": gaussian_blur(raw, 4.0), "drawn-gauss2": gaussian_blur(drawn, 2.0),
                    "g2-minus-median": g2 - flat.median(1).values[:, None, None],
                    "g2-over-mean": g2 / flat.mean(1).clamp(min=1e-8)[:, None, None],
                    "g2-zscore-image": (g2 - flat.mean(1)[:, None, None]) / flat.std(1).clamp(min=1e-8)[:, None, None],
                    "class-mean": cm, "class-mean-gauss2": cm2,
                    "z-h+cm": zh + zc, "z-h+0.5cm": zh + 0.5 * zc, "z-h*cm": zh.clamp(min=0) * zc.clamp(min=0)}
        score_maps(name, variants, comp, out)
    print_means(out)


if __name__ == "__main__":
    main()

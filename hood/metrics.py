"""OOD metrics computed exactly from the ROC curve (docs/method.md, defect 2: no threshold grid).

Scores are OOD scores: larger means more out-of-distribution. Two FPR95 conventions:
- ``id`` (the paper's): ID is the positive class; FPR95 is the fraction of OOD samples accepted as ID at
  the threshold that keeps 95% of ID samples.
- ``ood`` (OpenOOD, pytorch-ood): OOD is positive; FPR95 is the fraction of ID samples flagged as OOD at
  the threshold that catches 95% of OOD samples.
AUROC is the same either way; AUPR-In takes ID as positive, AUPR-Out takes OOD as positive.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

CONVENTION_CAPTION = {
    "id": "FPR95: share of OOD images accepted at the threshold that keeps 95% of ID images (ID positive, as the paper)",
    "ood": "FPR95: share of ID images rejected at the threshold that catches 95% of OOD images (OOD positive, as OpenOOD)",
}


def fpr_at_tpr(pos_scores: np.ndarray, neg_scores: np.ndarray, tpr_level: float = 0.95) -> float:
    """FPR at the first ROC point whose TPR reaches ``tpr_level``; positives score *higher*.

    Tied scores form one ROC point, so a threshold can never split a tie (the conservative reading).
    """
    y = np.r_[np.ones(len(pos_scores)), np.zeros(len(neg_scores))]
    s = np.r_[pos_scores, neg_scores].astype(np.float64)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return float(fpr[np.argmax(tpr >= tpr_level - 1e-12)])


def ood_metrics(id_scores: np.ndarray, ood_scores: np.ndarray, convention: str = "id") -> dict[str, float]:
    """FPR95, AUROC, AUPR-In and AUPR-Out as fractions, for OOD scores (larger = more OOD)."""
    id_scores = np.asarray(id_scores, dtype=np.float64).reshape(-1)
    ood_scores = np.asarray(ood_scores, dtype=np.float64).reshape(-1)
    for what, scores in (("ID", id_scores), ("OOD", ood_scores)):  # a metric of no scores, or of NaN, is no measurement
        if not len(scores):
            raise ValueError(f"no {what} scores: ood_metrics needs at least one score of each")
        if not np.isfinite(scores).all():
            raise ValueError(f"the {what} scores hold NaN or infinite values; drop or fix those samples first")
    if convention == "id":
        fpr95 = fpr_at_tpr(-id_scores, -ood_scores)
    elif convention == "ood":
        fpr95 = fpr_at_tpr(ood_scores, id_scores)
    else:
        raise ValueError(f"unknown FPR convention {convention!r}")
    y_id = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
    s = np.r_[id_scores, ood_scores]
    return {
        "fpr95": fpr95,
        "auroc": float(roc_auc_score(y_id, -s)),
        "aupr_in": float(average_precision_score(y_id, -s)),
        "aupr_out": float(average_precision_score(1 - y_id, s)),
    }


def id_threshold(id_scores: np.ndarray, keep: float = 0.95) -> float:
    """The smallest OOD-score threshold that keeps at least ``keep`` of ID images (score <= threshold
    counts as ID): the operating point of FPR95 in the ``id`` convention."""
    return float(np.quantile(np.asarray(id_scores, dtype=np.float64), keep, method="inverted_cdf"))


def mean_metrics(per_set: dict[str, dict[str, float]]) -> dict[str, float]:
    keys = ("fpr95", "auroc", "aupr_in", "aupr_out")
    return {k: float(np.mean([m[k] for m in per_set.values()])) for k in keys}


def _pixels(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat scores and labels of ``N x H x W`` maps and masks, checked: one mask per map, both classes present."""
    maps, masks = np.asarray(maps, dtype=np.float64), np.asarray(masks, dtype=bool)
    if maps.shape != masks.shape or maps.ndim != 3:
        raise ValueError(f"pixel metrics need N x H x W maps and masks of one shape; got {maps.shape} and {masks.shape}")
    if not np.isfinite(maps).all():
        raise ValueError("the maps hold NaN or infinite values; fix the maps first")
    if masks.all() or not masks.any():
        raise ValueError("pixel metrics need both marked and unmarked pixels among the masks")
    return maps.reshape(-1), masks.reshape(-1)


def pixel_auroc(maps: np.ndarray, masks: np.ndarray) -> float:
    """AUROC of every pixel of every map against the masks (True = foreign): does a brighter pixel mean a
    pasted one, pooled over the images (the anomaly-segmentation convention)."""
    scores, labels = _pixels(maps, masks)
    return float(roc_auc_score(labels, scores))


def aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Area under the per-region-overlap curve up to ``fpr_limit`` false-positive rate, divided by the limit
    (MVTec AD's AUPRO, 1 = perfect). Unlike pixel AUROC, a small region counts as much as a large one, so a map
    that marks only the big regions scores low. Each map's mask is one region; maps without one add only false
    positives. Exact: every distinct score is a threshold, ties form one point."""
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit is a false-positive rate in (0, 1]; got {fpr_limit}")
    scores, labels = _pixels(maps, masks)
    masks = np.asarray(masks, dtype=bool)
    sizes = masks.reshape(len(masks), -1).sum(1)
    regions = int((sizes > 0).sum())
    weight = np.repeat(np.where(sizes > 0, 1.0 / (np.maximum(sizes, 1) * regions), 0.0), masks[0].size)
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # the end of each run of tied scores
    fpr = np.r_[0.0, np.cumsum(~labels[order])[last] / float((~labels).sum())]
    pro = np.r_[0.0, np.cumsum(np.where(labels, weight, 0.0)[order])[last]]
    k = int(np.searchsorted(fpr, fpr_limit, side="right"))
    x, y = fpr[:k], pro[:k]
    if k < len(fpr):  # the curve up to exactly the limit, interpolated inside the step that crosses it
        t = (fpr_limit - fpr[k - 1]) / (fpr[k] - fpr[k - 1])
        x, y = np.r_[x, fpr_limit], np.r_[y, pro[k - 1] + t * (pro[k] - pro[k - 1])]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / fpr_limit)

"""hood.metrics against hand-computed cases (METHOD.md defect 2: FPR95 exactly from the ROC curve).

Scores are OOD scores: larger means more OOD. "id" convention (the paper): ID positive, FPR95 = share of
OOD images accepted at the threshold that keeps 95% of ID images. "ood" convention (OpenOOD): OOD
positive, FPR95 = share of ID images rejected at the threshold that catches 95% of OOD images.
"""

from __future__ import annotations

import numpy as np
import pytest

from hood.metrics import fpr_at_tpr, id_threshold, mean_metrics, ood_metrics


def public_grid_fpr95(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """The public implementation's FPR95: 10,000 evenly spaced thresholds, the first whose TPR (of ID,
    the positive class) lands in [0.9495, 0.9505]; 0 when none does (METHOD.md defect 2)."""
    id_conf, ood_conf = -np.asarray(id_scores, float), -np.asarray(ood_scores, float)
    lo, hi = min(id_conf.min(), ood_conf.min()), max(id_conf.max(), ood_conf.max())
    for t in np.linspace(lo, hi, 10_000):
        tpr = np.mean(id_conf >= t)
        if 0.9495 <= tpr <= 0.9505:
            return float(np.mean(ood_conf >= t))
    return 0.0


def brute_fpr95_id(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Reference: scan every distinct score as a threshold (score <= t is accepted as ID), smallest first;
    the first that keeps >= 95% of ID gives the share of OOD accepted."""
    for t in np.unique(np.r_[id_scores, ood_scores]):
        if np.mean(id_scores <= t) >= 0.95:
            return float(np.mean(ood_scores <= t))
    raise AssertionError("unreachable")


def test_fpr95_id_convention_hand_case() -> None:
    id_s = np.arange(20) / 10.0  # 0.0 .. 1.9
    ood_s = np.array([1.0, 1.5, 2.0, 2.5])
    # keeping 95% of ID = 19 of 20 -> accept scores <= 1.8 -> OOD 1.0 and 1.5 accepted -> 2/4
    assert ood_metrics(id_s, ood_s, "id")["fpr95"] == pytest.approx(0.5)


def test_fpr95_ood_convention_hand_case() -> None:
    id_s = np.arange(20) / 10.0  # 0.0 .. 1.9
    ood_s = 1.0 + np.arange(20) / 20.0  # 1.00 .. 1.95
    # catching 95% of OOD = 19 of 20 -> flag scores >= 1.05 -> ID 1.1 .. 1.9 flagged = 9/20
    assert ood_metrics(id_s, ood_s, "ood")["fpr95"] == pytest.approx(9 / 20)
    # the paper's convention on the same scores: keep ID <= 1.8 -> OOD 1.00..1.80 accepted = 17/20
    assert ood_metrics(id_s, ood_s, "id")["fpr95"] == pytest.approx(17 / 20)


def test_fpr95_perfect_and_reversed_separation() -> None:
    id_s, ood_s = np.linspace(0, 1, 50), np.linspace(2, 3, 50)
    for conv in ("id", "ood"):
        m = ood_metrics(id_s, ood_s, conv)
        assert m["fpr95"] == 0.0
        assert m["auroc"] == 1.0 and m["aupr_in"] == pytest.approx(1.0) and m["aupr_out"] == pytest.approx(1.0)
    rev = ood_metrics(ood_s, id_s, "id")
    assert rev["fpr95"] == 1.0 and rev["auroc"] == 0.0


def test_unknown_convention_rejected() -> None:
    with pytest.raises(ValueError):
        ood_metrics(np.zeros(3), np.ones(3), "both")


def test_ties_form_one_roc_point() -> None:
    # all ID score 0, four OOD tie with them: 95% of ID can only be kept by accepting the whole tie
    id_s = np.zeros(20)
    ood_s = np.r_[np.zeros(4), np.ones(16)]
    m = ood_metrics(id_s, ood_s, "id")
    assert m["fpr95"] == pytest.approx(4 / 20)  # not 4/20 * 0.95 (a threshold never splits a tie)
    # AUROC counts a tied (ID, OOD) pair as one half: (16*20 + 0.5*4*20) / (20*20)
    assert m["auroc"] == pytest.approx(0.9)


def test_ties_in_positive_class_at_the_threshold() -> None:
    # 10 ID at 0 and 10 ID at 1: 95% of ID needs the score-1 tie, which takes every OOD at 1 with it
    id_s = np.r_[np.zeros(10), np.ones(10)]
    ood_s = np.r_[np.ones(6), np.full(4, 2.0)]
    assert ood_metrics(id_s, ood_s, "id")["fpr95"] == pytest.approx(0.6)
    assert fpr_at_tpr(-id_s, -ood_s) == pytest.approx(0.6)


def test_grid_search_returns_zero_where_exact_is_not() -> None:
    """With 10 ID images the TPR moves in steps of 0.1 and never lands in [0.9495, 0.9505]: the public
    grid search silently reports FPR95 = 0 (a perfect detector) for heavily overlapping scores."""
    id_s = np.arange(10, dtype=float)  # 0 .. 9
    ood_s = np.arange(10) + 0.5  # 0.5 .. 9.5
    assert public_grid_fpr95(id_s, ood_s) == 0.0
    # exact: keeping >= 95% of 10 ID images means all 10 (score <= 9) -> OOD 0.5 .. 8.5 accepted = 9/10
    exact = ood_metrics(id_s, ood_s, "id")["fpr95"]
    assert exact == pytest.approx(0.9)
    assert ood_metrics(id_s, ood_s, "id")["auroc"] == pytest.approx(0.55)  # 55 of 100 pairs ordered right


def test_grid_search_agrees_where_its_band_is_hit() -> None:
    # 2000 ID scores: the band is reachable, and then both give (about) the same value
    rng = np.random.default_rng(0)
    id_s, ood_s = rng.normal(0, 1, 2000), rng.normal(1.5, 1, 2000)
    grid, exact = public_grid_fpr95(id_s, ood_s), ood_metrics(id_s, ood_s, "id")["fpr95"]
    assert grid > 0
    assert abs(grid - exact) < 0.03  # the band's first hit is TPR 0.9505, the exact point TPR 0.95
    assert exact == pytest.approx(brute_fpr95_id(id_s, ood_s))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fpr95_matches_brute_force_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    id_s = rng.integers(0, 8, 37).astype(float)  # heavy ties, odd sizes
    ood_s = rng.integers(3, 12, 23).astype(float)
    assert ood_metrics(id_s, ood_s, "id")["fpr95"] == pytest.approx(brute_fpr95_id(id_s, ood_s))
    # the OOD convention is the same computation with the roles (and the score's sign) swapped
    assert ood_metrics(id_s, ood_s, "ood")["fpr95"] == pytest.approx(brute_fpr95_id(-ood_s, -id_s))


def test_auroc_and_aupr_hand_case() -> None:
    id_s = np.array([0.1, 0.2, 0.6])
    ood_s = np.array([0.4, 0.5, 0.9])
    m = ood_metrics(id_s, ood_s, "id")
    # pairs with ID score below OOD score: 3 + 3 + 1 of 9
    assert m["auroc"] == pytest.approx(7 / 9)
    # AUPR-In, ID ranked first (ascending score): ID at ranks 1, 2, 5 -> (1/1 + 2/2 + 3/5) / 3
    assert m["aupr_in"] == pytest.approx((1 + 1 + 3 / 5) / 3)
    # AUPR-Out, OOD ranked first (descending score): OOD at ranks 1, 3, 4 -> (1/1 + 2/3 + 3/4) / 3
    assert m["aupr_out"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert m["auroc"] == pytest.approx(ood_metrics(id_s, ood_s, "ood")["auroc"])  # same either way


def test_metrics_are_fractions() -> None:
    rng = np.random.default_rng(4)
    m = ood_metrics(rng.normal(size=30), rng.normal(size=12), "id")
    assert set(m) == {"fpr95", "auroc", "aupr_in", "aupr_out"}
    assert all(0.0 <= v <= 1.0 for v in m.values())


def test_id_threshold_keeps_95_percent_of_id() -> None:
    id_s = np.arange(20, dtype=float)
    t = id_threshold(id_s)
    assert t == 18.0  # 19 of 20 (95%) kept; 19.0 would keep 100%
    assert np.mean(id_s <= t) >= 0.95
    assert np.mean(id_s <= np.nextafter(t, -np.inf)) < 0.95  # the smallest such threshold
    assert id_threshold(np.arange(10, dtype=float)) == 9.0  # 95% of 10 needs all 10
    assert id_threshold(np.arange(100, dtype=float), keep=0.5) == 49.0


@pytest.mark.parametrize("seed", [0, 5])
def test_id_threshold_is_the_fpr95_operating_point(seed: int) -> None:
    rng = np.random.default_rng(seed)
    id_s, ood_s = rng.normal(0, 1, 53), rng.normal(1, 1, 41)
    t = id_threshold(id_s)
    assert np.mean(ood_s <= t) == pytest.approx(ood_metrics(id_s, ood_s, "id")["fpr95"])


def test_mean_metrics() -> None:
    per_set = {
        "a": {"fpr95": 0.2, "auroc": 0.9, "aupr_in": 0.8, "aupr_out": 0.7, "n": 10},
        "b": {"fpr95": 0.4, "auroc": 0.7, "aupr_in": 0.6, "aupr_out": 0.5, "n": 30},
    }
    assert mean_metrics(per_set) == pytest.approx({"fpr95": 0.3, "auroc": 0.8, "aupr_in": 0.7, "aupr_out": 0.6})

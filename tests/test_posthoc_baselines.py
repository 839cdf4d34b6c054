"""ASH, SCALE, GEN and fDBD: each against a case computed by hand, and against pytorch-ood's AUROC."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from hood.config import resolve
from hood.detectors.ash import ASH
from hood.detectors.fdbd import FDBD
from hood.detectors.gen import GEN
from hood.detectors.scale import SCALE
from hood.engine.features import FeatureSet
from hood.errors import ConfigError, DetectorParameterError
from hood.metrics import ood_metrics


def fs(features: list | np.ndarray | torch.Tensor, logits: list | np.ndarray | torch.Tensor | None = None) -> FeatureSet:
    f = torch.as_tensor(np.asarray(features, dtype=np.float32))
    lg = torch.as_tensor(np.asarray(logits, dtype=np.float32)) if logits is not None else torch.zeros(len(f), 2)
    return FeatureSet(f, lg)


class Head(nn.Module):
    """A classifier reduced to what these detectors read: its final ``linear`` layer."""

    def __init__(self, weight: list | np.ndarray, bias: list | np.ndarray) -> None:
        super().__init__()
        weight = np.asarray(weight, dtype=np.float32)
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(torch.as_tensor(weight))
            self.linear.bias.copy_(torch.as_tensor(np.asarray(bias, dtype=np.float32)))


def energy_of(logits: list[float]) -> float:
    return -math.log(sum(math.exp(v) for v in logits))


def test_ash_keeps_the_top_activations_scaled_by_the_sum_ratio() -> None:
    head = Head([[1, 0, 0, 0], [0, 1, 1, 0]], [0.5, -0.5])
    d = ASH(head, percentile=50)  # 4 activations, 50th percentile: the 2 largest stay
    assert d.k == 2
    # row 1: keeps 4 and 3 (s1 = 8, s2 = 7); row 2: keeps 2 and 5 (s1 = 7.5, s2 = 7); row 3: all zero
    z = [[4.0, 1.0, 3.0, 0.0], [0.5, 2.0, 0.0, 5.0], [0.0, 0.0, 0.0, 0.0]]
    e1, e2 = math.exp(8 / 7), math.exp(7.5 / 7)
    # shaped row 1 = e1 * (4, 0, 3, 0), row 2 = e2 * (0, 2, 0, 5); logits: entry 0, and entries 1 + 2
    expect = [energy_of([4 * e1 + 0.5, 3 * e1 - 0.5]), energy_of([0.5, 2 * e2 - 0.5]), energy_of([0.5, -0.5])]
    assert d.score_features(fs(z)) == pytest.approx(expect, rel=1e-12)
    assert ASH(head, percentile=60).k == 2  # 4 - round(2.4)
    assert d.settings() == {"percentile": 50.0}


def test_ash_and_scale_reject_percentiles_that_keep_nothing() -> None:
    head = Head(np.eye(4), np.zeros(4))
    for make in (ASH, SCALE):
        with pytest.raises(DetectorParameterError, match=r"^percentile must be in \[0, 100\), got 100.0$"):
            make(head, percentile=100)
        with pytest.raises(DetectorParameterError, match="^percentile 90.0 keeps none of the 4 activations"):
            make(head, percentile=90)  # 4 - round(3.6) = 0


def test_scale_scales_every_activation_by_the_ash_ratio_without_pruning() -> None:
    head = Head([[1, 1, 0, 0], [0, 0, 1, 1]], [0.0, 1.0])
    d = SCALE(head, percentile=50)
    z = [[4.0, 1.0, 3.0, 0.0], [0.5, 2.0, 0.0, 5.0]]
    e1, e2 = math.exp(8 / 7), math.exp(7.5 / 7)
    expect = [energy_of([5 * e1, 3 * e1 + 1]), energy_of([2.5 * e2, 5 * e2 + 1])]
    assert d.score_features(fs(z)) == pytest.approx(expect, rel=1e-12)
    # percentile 0 keeps everything: s1 = s2, every feature scaled by e
    d0 = SCALE(head, percentile=0)
    assert d0.score_features(fs(z[:1])) == pytest.approx([energy_of([5 * math.e, 3 * math.e + 1])], rel=1e-12)


def test_gen_sums_the_generalized_entropy_of_the_top_m_probabilities() -> None:
    logits = [[math.log(3.0), 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 0.0, 0.0]]  # softmax (0.6, 0.2, 0.2), peaked, flat
    top2 = GEN(gamma=0.5, m=2).score_features(fs(np.zeros((3, 1)), logits))  # logits stored in float32: rel 1e-6
    assert top2[0] == pytest.approx(math.sqrt(0.6 * 0.4) + math.sqrt(0.2 * 0.8), rel=1e-6)
    every = GEN(gamma=0.5, m=100).score_features(fs(np.zeros((3, 1)), logits))  # M capped at the 3 classes
    assert every[0] == pytest.approx(math.sqrt(0.6 * 0.4) + 2 * math.sqrt(0.2 * 0.8), rel=1e-6)
    assert every[2] == pytest.approx(3 * math.sqrt(2 / 9), rel=1e-12)
    assert every[1] < every[0] < every[2]  # confident = ID = low
    with pytest.raises(DetectorParameterError, match="^gamma must be positive"):
        GEN(gamma=0)
    with pytest.raises(DetectorParameterError, match="^m must be at least 1"):
        GEN(m=0)


def test_fdbd_averages_boundary_distances_over_the_distance_to_the_train_mean() -> None:
    head = Head([[2, 0], [0, 1], [0, 0]], [0.0, 0.0, 1.0])
    d = FDBD(head)
    d.fit_features(fs([[0.0, 0.0], [2.0, 2.0]]))  # mean (1, 1)
    # z = (3, 1): logits (6, 1, 1), class 0; boundaries with 1 and 2 at 5/|(2,-1)| and 5/|(2,0)|; |z - mean| = 2
    # z = (0, 3): logits (0, 3, 1), class 1; boundaries with 0 and 2 at 3/|(-2,1)| and 2/|(0,1)|; |z - mean| = sqrt 5
    s5 = math.sqrt(5)
    expect = [-(5 / s5 + 5 / 2) / 2 / 2, -(3 / s5 + 2 / 1) / 2 / s5]
    assert d.score_features(fs([[3.0, 1.0], [0.0, 3.0]])) == pytest.approx(expect, rel=1e-12)
    with pytest.raises(ValueError, match="not fitted"):
        FDBD(head).score_features(fs([[3.0, 1.0]]))
    with pytest.raises(ValueError, match="^FDBD is not fitted: call fit"):
        FDBD(head).predict((np.ones((1, 2)), np.ones((1, 3))))


def test_fdbd_fit_round_trips_through_a_checkpoint(tmp_path) -> None:
    from hood.models.checkpoint import safe_load

    head, train, id_test, _ = synthetic_case()
    a, b = FDBD(head), FDBD(head)
    a.fit_features(train)
    torch.save({"state": a.state()}, tmp_path / "fit.pt")
    b.load_state(safe_load(tmp_path / "fit.pt")["state"])
    assert b.score_features(id_test) == pytest.approx(a.score_features(id_test))
    assert a.settings() == {} and FDBD.keywords() == {}


def test_parameters_come_from_the_config_and_errors_name_their_key() -> None:
    """Each method's evaluate.params are its constructor's keywords; a value out of range is one line naming the
    key, an unknown method or keyword one line listing the valid ones; defaults are the constructors' own."""
    from hood.jobs.detectors import build_detectors

    head = Head(np.ones((3, 40)), np.zeros(3))
    cfg = resolve(None, {}, ["evaluate.params={ash: {percentile: 90}, scale: {percentile: 80}, gen: {gamma: 0.5, m: 5}}"])
    dets, _ = build_detectors(["ash", "scale", "gen"], head, cfg, torch.device("cpu"))
    assert dets["ash"].settings() == {"percentile": 90.0} and dets["scale"].settings() == {"percentile": 80.0}
    assert dets["gen"].settings() == {"gamma": 0.5, "m": 5}
    defaults, _ = build_detectors(["ash", "scale", "gen"], head, resolve(None, {}, None), torch.device("cpu"))
    assert defaults["ash"].percentile == 95.0 and defaults["scale"].percentile == 85.0
    assert (defaults["gen"].gamma, defaults["gen"].m) == (0.1, 100)
    for method, key, value in (("ash", "percentile", 100), ("scale", "percentile", -1), ("gen", "gamma", 0), ("gen", "m", 0)):
        bad = resolve(None, {}, [f"evaluate.params.{method}.{key}={value}"])
        with pytest.raises(ConfigError, match=rf"^evaluate.params.{method}.{key}: {key} must "):
            build_detectors([method], head, bad, torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"^evaluate.params.ash: unknown parameter 'percentil' \(did you mean 'percentile'\?\); "
                                          r"ash takes percentile \(default 95.0\)$"):
        build_detectors(["ash"], head, resolve(None, {}, ["evaluate.params.ash.percentil=90"]), torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"^evaluate.params: unknown method 'knnn' \(did you mean 'knn'\?\); methods with parameters: "):
        build_detectors(["msp"], head, resolve(None, {}, ["evaluate.params.knnn.k=3"]), torch.device("cpu"))


def synthetic_case() -> tuple[Head, FeatureSet, FeatureSet, FeatureSet]:
    """Seeded ReLU features of 5 classes, 32-d, and flatter OOD features, for the pytorch-ood cross-check."""
    rng = np.random.default_rng(7)
    protos = np.maximum(rng.normal(0.0, 1.0, (5, 32)), 0) * 2
    w, b = (protos - protos.mean(0)) / 5, rng.normal(0.0, 0.1, 5)  # softmax within (1e-7, 1 - 1e-7): see GEN below
    head = Head(w, b)

    def features(n: int, ood: bool) -> FeatureSet:
        if ood:
            z = np.maximum(rng.normal(0.4, 1.0, (n, 32)), 0)
        else:
            z = np.maximum(protos[rng.integers(0, 5, n)] + rng.normal(0.0, 1.2, (n, 32)), 0)
        z = torch.as_tensor(z, dtype=torch.float32)
        with torch.no_grad():
            return FeatureSet(z, head.linear(z))

    return head, features(400, False), features(300, False), features(300, True)


# AUROC of pytorch-ood 0.4.0's ASH(variant="ash-s", percentile=0.95), SCALE(percentile=0.85),
# GEN(gamma=0.1, M=100) and fDBD (fit_features on the training rows) on synthetic_case(), 300 ID and 300
# OOD rows, computed off-line (pytorch-ood is no dependency of hood) with hood.metrics.ood_metrics; the
# scores themselves agreed to 1e-6 relative (GEN's up to its float32 softmax, times 5: pytorch-ood
# averages the M terms where the paper sums them). pytorch-ood clamps GEN's probabilities to
# [1e-7, 1 - 1e-7], the paper does not, hence the case's softmax stays inside that range.
PYTORCH_OOD_AUROC = {"ash": 0.6845222, "scale": 0.8305444, "gen": 0.8748333, "fdbd": 0.9183000}


def test_auroc_matches_pytorch_ood_on_a_synthetic_case() -> None:
    head, train, id_test, ood = synthetic_case()
    detectors = {"ash": ASH(head, percentile=95), "scale": SCALE(head, percentile=85), "gen": GEN(gamma=0.1, m=100), "fdbd": FDBD(head)}
    detectors["fdbd"].fit_features(train)
    for name, d in detectors.items():
        auroc = ood_metrics(d.score_features(id_test), d.score_features(ood))["auroc"]
        assert 0.6 < auroc < 0.999, name  # neither chance nor perfect, so a formula change would show
        assert auroc == pytest.approx(PYTORCH_OOD_AUROC[name], abs=2e-5), name  # 1 of 90,000 pairs = 1.1e-5

"""NAC-UE, NCI, RMDS and AdaSCALE: each against a case computed by hand, and against pytorch-ood's AUROC where
pytorch-ood has the method."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_posthoc_baselines import Head, fs, synthetic_case
from torch import nn

from hood.detectors.adascale import STEP, AdaSCALE, adaptive_percentiles, scaled_energy
from hood.detectors.gradients import balanced_rows
from hood.detectors.nac import NAC, bin_edges
from hood.detectors.nci import NCI
from hood.detectors.rmds import RMDS
from hood.errors import DetectorParameterError
from hood.metrics import ood_metrics
from hood.models.base import Classifier, ClassifierOutput


class Pooled(Classifier):
    """A classifier small enough to differentiate by hand: a 1x1 convolution (optional ReLU), mean-pooled into
    the features, then ``linear``; ``pool`` is an identity module on the features, for pytorch-ood's hooks."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, conv: np.ndarray | None = None, relu: bool = False) -> None:
        super().__init__()
        c = np.eye(3, dtype=np.float32) if conv is None else np.asarray(conv, dtype=np.float32)
        self.conv = nn.Conv2d(3, c.shape[0], 1, bias=False)
        self.relu = relu
        self.pool = nn.Identity()
        self.linear = nn.Linear(c.shape[0], len(weight))
        self.feature_dim, self.num_classes = c.shape[0], len(weight)
        with torch.no_grad():
            self.conv.weight.copy_(torch.as_tensor(c)[:, :, None, None])
            self.linear.weight.copy_(torch.as_tensor(np.asarray(weight, dtype=np.float32)))
            self.linear.bias.copy_(torch.as_tensor(np.asarray(bias, dtype=np.float32)))

    def stage_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        m = self.conv(x)
        return [torch.relu(m) if self.relu else m]

    def forward_all(self, x: torch.Tensor) -> ClassifierOutput:
        maps = self.stage_maps(x)
        features = self.pool(maps[-1].mean(dim=(2, 3)))
        return ClassifierOutput(features, self.linear(features), maps)


def images_of(pixels: list[list[float]], side: int = 2) -> torch.Tensor:
    """uint8 images whose channel c is the constant ``pixels[i][c]`` everywhere."""
    return torch.tensor(pixels, dtype=torch.uint8)[:, :, None, None].expand(-1, -1, side, side).contiguous()


# --- NCI -------------------------------------------------------------------------------------------------


def test_nci_is_the_predicted_weights_alignment_plus_the_l1_norm() -> None:
    d = NCI(Head([[1, 0], [0, 1]], [0, 0]), alpha=0.1)
    d.fit_features(fs([[1, 1], [3, 1]]))  # mean (2, 1)
    # (4, 1): centred (2, 0), class 0, alignment 2 / 2; (1, 2): centred (-1, 1), class 1, 1 / sqrt 2;
    # the mean itself has no direction: alignment 0
    got = d.score_features(fs([[4, 1], [1, 2], [2, 1]]))
    assert got == pytest.approx([-(1 + 0.5), -(1 / math.sqrt(2) + 0.3), -0.3], rel=1e-12)
    assert d.settings() == {"alpha": 0.1}
    with pytest.raises(DetectorParameterError, match="alpha"):
        NCI(Head([[1, 0]], [0]), alpha=-1)


# --- RMDS ------------------------------------------------------------------------------------------------


def test_rmds_subtracts_the_background_gaussian() -> None:
    d = RMDS()
    feats = fs([[0.0], [2.0], [4.0], [6.0]])
    feats.labels = torch.tensor([0, 0, 1, 1])
    d.fit_features(feats)  # class means 1 and 5, within-class variance 1; background mean 3, variance 5
    got = d.score_features(fs([[1.0], [3.0], [10.0]]))
    assert got == pytest.approx([0 - 4 / 5, 4 - 0, 25 - 49 / 5], rel=1e-12)


# --- NAC -------------------------------------------------------------------------------------------------


def test_nac_bins_are_the_authors_log_spaced_edges() -> None:
    assert bin_edges(4).tolist() == pytest.approx([0.0, 0.5, 1.01, 1.2])
    e = bin_edges(50)
    assert len(e) == 50 and e[0] == 0 and e[24] == pytest.approx(0.5) and e[-2] == pytest.approx(1.01)
    widths = np.diff(e.numpy()[:-1])
    assert widths[0] > widths[12] > widths[23] and widths[-1] > widths[-12] > widths[-24]  # finest about 0.5


def test_nac_state_is_the_sigmoid_of_output_times_kl_gradient() -> None:
    w, b = np.array([[1.0, -1.0, 0.5], [0.0, 2.0, -1.0]]), np.array([0.1, -0.2])
    d = NAC(Pooled(w, b), alpha=[3.0], m=[50], o=[1], device="cpu")
    imgs = images_of([[200, 10, 90], [30, 250, 128]])
    x = imgs.double() / 127.5 - 1  # hood's input normalization
    z = x.mean(dim=(2, 3)).numpy()  # identity 1x1 convolution, mean-pooled
    logits = z @ w.T + b
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    g = (p - 0.5) @ w  # d/dz of -mean_k log softmax_k = W^T (p - u)
    want = 1 / (1 + np.exp(-3.0 * z * g))
    assert d.states(imgs)[0].numpy() == pytest.approx(want, rel=1e-5)


def test_nac_coverage_counts_each_neurons_bins_up_to_o() -> None:
    d = NAC(Pooled(np.eye(3), np.zeros(3)), alpha=[1.0], m=[4], o=[2], device="cpu")  # bins [0, .5), [.5, 1.01), ...
    fit = torch.tensor([[0.1, 0.9], [0.2, 0.7], [0.6, 0.95]], dtype=torch.float64)
    test = torch.tensor([[0.3, 0.8], [0.7, 0.2]], dtype=torch.float64)
    d.states = lambda images: [fit if len(images) == 3 else test]  # type: ignore[method-assign]
    d.fit_on_images(torch.zeros(3, 3, 2, 2, dtype=torch.uint8), None)
    assert d.counts is not None and d.counts[0].tolist() == [[2, 1, 0], [0, 3, 0]]
    # coverage min(count / 2, 1): neuron 0 (1, .5, 0), neuron 1 (0, 1, 0)
    assert d.score_images(torch.zeros(2, 3, 2, 2, dtype=torch.uint8)).tolist() == pytest.approx([-1.0, -0.25])


def test_nac_parameters_are_one_list_per_layer() -> None:
    model = Pooled(np.eye(3), np.zeros(3))
    assert NAC(model).settings() == {"alpha": [100.0, 1000.0, 0.001, 0.001], "m": [50, 500, 50, 500],
                                     "o": [50.0, 100.0, 5.0, 100.0], "fit_images": 1000}
    with pytest.raises(DetectorParameterError, match="one value per layer"):
        NAC(model, alpha=[1.0, 2.0], m=[50], o=[5])
    with pytest.raises(DetectorParameterError, match="m"):
        NAC(model, alpha=[1.0], m=[2], o=[5])
    with pytest.raises(DetectorParameterError, match="alpha"):
        NAC(model, alpha=5.0)
    with pytest.raises(ValueError, match="pass it"):
        NAC(None)


def test_fit_draw_is_class_balanced_and_seeded() -> None:
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    rows = balanced_rows(100, labels, 30)
    assert torch.bincount(labels[rows]).tolist() == [10, 10, 10]
    assert torch.equal(rows, balanced_rows(100, labels, 30))
    assert torch.bincount(labels[balanced_rows(100, labels, 90)]).tolist() == [20, 20, 20]  # the rarest class bounds it
    assert len(balanced_rows(100, None, 7)) == 7


# --- AdaSCALE --------------------------------------------------------------------------------------------


def test_adascale_percentile_follows_the_fit_ecdf() -> None:
    ref = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    got = adaptive_percentiles(torch.tensor([0.5, 2.0, 3.5, 9.0], dtype=torch.float64), ref, 60.0, 80.0)
    assert got.tolist() == pytest.approx([80.0, 70.0, 65.0, 60.0])  # F = 0, 1/2, 3/4, 1


def test_adascale_scales_each_row_at_its_own_percentile() -> None:
    w, b = torch.tensor([[1.0, 0, 0, 0], [0, 1, 1, 0]], dtype=torch.float64), torch.tensor([0.5, -0.5], dtype=torch.float64)
    z = torch.tensor([[4.0, 1.0, 3.0, 0.0], [4.0, 1.0, 3.0, 0.0]], dtype=torch.float64)
    got = scaled_energy(z, torch.tensor([50.0, 75.0], dtype=torch.float64), w, b)
    # row 1 keeps 2 (s2 = 7), row 2 keeps 1 (s2 = 4); s1 = 8; every feature is scaled, SCALE's way
    want = [-math.log(math.exp(4 * f + 0.5) + math.exp(4 * f - 0.5)) for f in (math.exp(8 / 7), math.exp(8 / 4))]
    assert got.tolist() == pytest.approx(want, rel=1e-12)


def test_adascale_nudges_the_least_sensitive_pixels_and_measures_the_shift() -> None:
    # the top logit's gradient is W_c / 4 per pixel of channel c: channel 0 (|0.1|) is the least sensitive, and
    # o = 0.34 of the 12 values nudges exactly its 4 pixels by +STEP, moving feature 0 by STEP
    w = np.array([[0.1, 1.0, 2.0], [0.0, 0.0, 0.0]])
    d = AdaSCALE(Pooled(w, np.array([5.0, 0.0])), k1=50, k2=50, lmbda=10.0, o=0.34, device="cpu")  # class 0 on top
    imgs = images_of([[250, 100, 40]])
    z, q = d.shifts(imgs)
    z0 = 250 / 127.5 - 1
    assert z[0].tolist() == pytest.approx([z0, 100 / 127.5 - 1, 40 / 127.5 - 1], rel=1e-6)
    # D = 3, k1 = k2 = floor(1.5) = 1: the top activation, feature 0
    assert q.tolist() == pytest.approx([(z0 + STEP) + 10.0 * STEP], rel=1e-6)


def test_adascale_fits_on_images_and_scores_with_the_ecdf() -> None:
    w = np.array([[0.1, 1.0, 2.0], [0.5, -1.0, 0.0]])
    d = AdaSCALE(Pooled(w, np.zeros(2), relu=True), p_min=40, p_max=60, o=0.34, fit_images=3, device="cpu")
    fit = images_of([[250, 100, 40], [200, 150, 90], [180, 220, 30], [10, 10, 10]])
    d.fit_on_images(fit, None)
    assert d.reference is not None and len(d.reference) == 3
    test = images_of([[240, 120, 60], [5, 5, 250]])
    z, q = d.shifts(test)
    p = adaptive_percentiles(q, d.reference, 40, 60)
    assert d.score_images(test).tolist() == pytest.approx(scaled_energy(z, p, d.weight, d.bias).tolist(), rel=1e-12)
    assert d.settings() == {"p_min": 40.0, "p_max": 60.0, "k1": 5.0, "k2": 1.0, "lmbda": 10.0, "o": 0.34, "fit_images": 3}
    with pytest.raises(DetectorParameterError, match="p_min"):
        AdaSCALE(Pooled(w, np.zeros(2)), p_min=90, p_max=80)


def test_image_detectors_fit_through_the_user_api_and_refuse_arrays() -> None:
    w = np.array([[0.1, 1.0, 2.0], [0.5, -1.0, 0.0]])
    rng = np.random.default_rng(0)
    imgs = torch.as_tensor(rng.integers(0, 256, (12, 3, 4, 4), dtype=np.uint8))
    for d in (NAC(Pooled(w, np.zeros(2), relu=True), alpha=[10.0], m=[10], o=[2], device="cpu"),
              AdaSCALE(Pooled(w, np.zeros(2), relu=True), o=0.3, device="cpu")):
        with pytest.raises(ValueError, match="not fitted"):
            d.predict(imgs)
        d.fit(imgs)
        s = d.predict(imgs)
        assert s.shape == (12,) and np.isfinite(s).all()
        with pytest.raises(ValueError, match="arrays"):
            d.fit((np.zeros((4, 3)), np.zeros((4, 2))))


# --- against pytorch-ood ---------------------------------------------------------------------------------


def nac_case() -> tuple[Pooled, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A seeded ReLU classifier of 3-colour images: ID images of one dominant colour, OOD images with a second one."""
    rng = np.random.default_rng(11)
    conv = rng.normal(0, 1, (8, 3))
    w = rng.normal(0, 1, (3, 8))
    model = Pooled(w, rng.normal(0, 0.1, 3), conv, relu=True)

    def images(n: int, ood: bool) -> torch.Tensor:
        px = rng.normal(40, 25, (n, 3, 4, 4))
        px[np.arange(n), rng.integers(0, 3, n)] += 170
        if ood:  # a second colour, weaker
            px[np.arange(n), rng.integers(0, 3, n)] += 90
        return torch.as_tensor(np.clip(px, 0, 255).astype(np.uint8))

    return model, images(300, False), images(200, False), images(200, True)


# AUROC of pytorch-ood 0.4.0 on the seeded cases above, computed off-line (pytorch-ood is no dependency of hood)
# with hood.metrics.ood_metrics: NCI(alpha=0.01) and RMD fitted on synthetic_case()'s 400 training rows labelled
# by their predicted classes (pytorch-ood leaves both covariances undivided by N, which scales every RMD score by
# the same 1/N: the AUROC is the same), and NACUE(layers=[model.pool], m_bins=50, alpha=100, o_star=5) fitted on
# nac_case()'s 300 training images. pytorch-ood's NACUE bins are not the authors' (geometric edges from 1e-6
# where the authors' are log-spaced from 0, and m bins where the authors' m edges make m - 1): as shipped it gives
# 0.98345 here; with its _bin_indices_geometric replaced by the authors' edges (hood's bin_edges) it gives the
# figure below (both with scores rounded to 1e-6), which NAC must match to the pair. Everything else (the gradient of the KL divergence to the
# uniform distribution, the sigmoid state, the coverage min(count / o, 1)) is then the same computation.
PYTORCH_OOD_AUROC = {"nci": 0.9172556, "rmds": 0.9442, "nac": 0.880025}


def test_auroc_matches_pytorch_ood_on_seeded_cases() -> None:
    head, train, id_test, ood = synthetic_case()
    train.labels = torch.unique(train.preds, return_inverse=True)[1]  # the classes the classifier gives them, 0..C-1
    for name, d in {"nci": NCI(head, alpha=0.01), "rmds": RMDS()}.items():
        d.fit_features(train)
        auroc = ood_metrics(d.score_features(id_test), d.score_features(ood))["auroc"]
        assert 0.6 < auroc < 0.999, name
        assert auroc == pytest.approx(PYTORCH_OOD_AUROC[name], abs=2e-5), name  # 1 of 90,000 pairs = 1.1e-5
    model, fit, id_imgs, ood_imgs = nac_case()
    nac = NAC(model, alpha=[100.0], m=[50], o=[5], fit_images=len(fit), device="cpu")
    nac.fit_on_images(fit, None)
    # coverages are multiples of 1 / (o x neurons) = 1 / 40, so many scores tie; rounded, float32 and float64
    # sums tie alike
    auroc = ood_metrics(np.round(nac.score_images(id_imgs), 6), np.round(nac.score_images(ood_imgs), 6))["auroc"]
    assert 0.6 < auroc < 0.999
    assert auroc == pytest.approx(PYTORCH_OOD_AUROC["nac"], abs=3e-5)  # 1 of 40,000 pairs = 2.5e-5

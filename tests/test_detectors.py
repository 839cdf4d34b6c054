"""Each baseline against a case small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from hood.detectors import DETECTORS, all_methods
from hood.detectors.energy import Energy
from hood.detectors.knn import KNN
from hood.detectors.mahalanobis import Mahalanobis
from hood.detectors.maxlogit import MaxLogit
from hood.detectors.msp import MSP
from hood.detectors.odin import ODIN
from hood.detectors.react import ReAct
from hood.detectors.scale import SCALE
from hood.detectors.vim import ViM, default_dim
from hood.engine.features import FeatureSet
from hood.errors import ConfigError, DetectorParameterError
from hood.jobs.detectors import resolve_methods


def fs(features: list | torch.Tensor, logits: list | torch.Tensor | None = None, labels: list | None = None) -> FeatureSet:
    f = torch.as_tensor(features, dtype=torch.float32)
    lg = torch.as_tensor(logits, dtype=torch.float32) if logits is not None else torch.zeros(len(f), 2)
    return FeatureSet(f, lg, None, None if labels is None else torch.as_tensor(labels))


class Head(nn.Module):
    """A classifier reduced to what ReAct and ViM read: its final ``linear`` layer."""

    def __init__(self, weight: list, bias: list) -> None:
        super().__init__()
        self.linear = nn.Linear(len(weight[0]), len(weight))
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor(weight))
            self.linear.bias.copy_(torch.tensor(bias))


def test_msp_energy_maxlogit_on_fixed_logits() -> None:
    logits = [[10.0, 0.0, 0.0], [0.0, 0.0, 0.0], [math.log(3.0), 0.0, 0.0]]
    f = fs(np.zeros((3, 2)), logits)
    assert MSP().score_features(f) == pytest.approx([-math.exp(10) / (math.exp(10) + 2), -1 / 3, -0.6])
    assert Energy().score_features(f) == pytest.approx([-math.log(math.exp(10) + 2), -math.log(3), -math.log(5)])
    assert MaxLogit().score_features(f) == pytest.approx([-10.0, 0.0, -math.log(3.0)])


def test_knn_distance_to_kth_neighbour_of_normalized_features() -> None:
    bank = fs([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])  # unit directions 0, 90, 180 degrees after normalizing
    query = fs([[5.0, 0.0], [1.0, 1.0]])  # 0 and 45 degrees
    d1 = KNN(k=1)
    d1.fit_features(bank)
    assert d1.score_features(query) == pytest.approx([0.0, 2 * math.sin(math.radians(22.5))], abs=1e-6)
    d2 = KNN(k=2)
    d2.fit_features(bank)
    assert d2.score_features(query, chunk=1) == pytest.approx(d2.score_features(query))  # chunking must not change anything
    assert d2.score_features(query) == pytest.approx([math.sqrt(2), 2 * math.sin(math.radians(22.5))], abs=1e-6)
    with pytest.raises(DetectorParameterError, match="^k is 9, more than the 3 ID training rows"):  # no 9th neighbour
        KNN(k=9).fit_features(bank)
    for bad in (0, 2.5, True):
        with pytest.raises(DetectorParameterError, match=f"^k must be a positive integer, got {bad!r}$"):
            KNN(k=bad)


def test_mahalanobis_matches_the_closed_form_on_a_gaussian_sample() -> None:
    rng = np.random.default_rng(0)
    cov = np.array([[2.0, 0.6], [0.6, 1.0]])
    means = np.array([[0.0, 0.0], [6.0, 6.0]])
    x = np.concatenate([rng.multivariate_normal(m, cov, 4000) for m in means])
    y = np.repeat([0, 1], 4000)
    d = Mahalanobis()
    d.fit_features(fs(x, labels=y.tolist()))
    mu = np.stack([x[y == c].mean(0) for c in (0, 1)])
    centered = x - mu[y]
    prec = np.linalg.inv(centered.T @ centered / len(x))
    q = np.array([[0.0, 0.0], [6.0, 6.0], [3.0, -3.0], [1.0, 0.5]])
    expect = [min((v - m) @ prec @ (v - m) for m in mu) for v in q]
    assert d.score_features(fs(q)) == pytest.approx(expect, rel=1e-6, abs=1e-9)
    # and the fit recovers the generating Gaussian
    assert np.linalg.inv(prec) == pytest.approx(cov, abs=0.1)
    assert d.score_features(fs(q))[2] > d.score_features(fs(q))[3]


def test_react_clips_at_the_id_train_percentile_then_takes_energy() -> None:
    head = Head([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.5])
    d = ReAct(head, percentile=90)
    d.fit_features(fs(np.arange(100, dtype=np.float32).reshape(50, 2)))  # activations 0..99
    assert d.clip == pytest.approx(89.1)  # numpy's linear percentile of 0..99
    z = np.array([[1.0, 2.0], [500.0, 3.0]])
    clipped = np.minimum(z, 89.1)
    logits = clipped @ np.eye(2) + [0.0, 0.5]
    expect = -np.log(np.exp(logits).sum(1))
    assert d.score_features(fs(z)) == pytest.approx(expect)
    with pytest.raises(DetectorParameterError, match=r"^percentile must be in \(0, 100\], got 0$"):
        ReAct(head, percentile=0)


def test_vim_virtual_logit_on_a_constructed_case() -> None:
    # 3-d features, 3 classes; the last layer's bias moves the origin to u = -W^+ b = (-1, 0, 2)
    w = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    b = [1.0, 0.0, -2.0]
    head = Head(w, b)
    d = ViM(head, dim=2)
    assert d.origin.numpy() == pytest.approx([-1.0, 0.0, 2.0])
    rng = np.random.default_rng(0)
    # ID training data spread in x and y around u, with a small spread in z: the residual is the z axis
    train = np.c_[rng.normal(0, 3, 500), rng.normal(0, 2, 500), rng.normal(0, 0.1, 500)] + [-1.0, 0.0, 2.0]
    train_logits = train @ np.array(w).T + b
    d.fit_features(fs(train, train_logits))
    basis = d.residual_basis.numpy()
    assert abs(basis[:, 0]) == pytest.approx([0.0, 0.0, 1.0], abs=1e-2)
    alpha = train_logits.max(1).mean() / np.abs((train - [-1.0, 0.0, 2.0]) @ basis[:, 0]).mean()
    assert d.alpha == pytest.approx(alpha, rel=1e-6)
    q = np.array([[-1.0, 0.0, 2.0], [-1.0, 0.0, 5.0]])  # at the origin; 3 units along the residual
    q_logits = q @ np.array(w).T + b
    lse = np.log(np.exp(q_logits).sum(1))
    resid = np.abs((q - [-1.0, 0.0, 2.0]) @ basis[:, 0])
    assert d.score_features(fs(q, q_logits)) == pytest.approx(alpha * resid - lse, rel=1e-6)
    assert default_dim(128) == 64 and default_dim(512) == 256 and default_dim(768) == 512 and default_dim(2048) == 1000
    with pytest.raises(DetectorParameterError, match=r"^dim must be in \[1, 2\] for 3-d features, got 3$"):
        ViM(head, dim=3)


def test_odin_without_perturbation_is_tempered_msp_and_perturbation_raises_confidence() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    images = torch.randint(0, 256, (7, 3, 4, 4), dtype=torch.uint8)
    x = images.float() / 127.5 - 1
    with torch.no_grad():
        logits = model(x)
    hoods = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "device": "cpu"}  # the model reads hood's (x/255 - 0.5) / 0.5
    plain = ODIN(model, temperature=10.0, epsilon=0.0, batch_size=3, **hoods).score_images(images)
    assert plain == pytest.approx((-torch.softmax(logits / 10, 1).amax(1)).numpy(), rel=1e-5)
    perturbed = ODIN(model, temperature=10.0, epsilon=0.002, **hoods).score_images(images)
    assert np.all(perturbed <= plain + 1e-7) and np.any(perturbed < plain)
    with pytest.raises(DetectorParameterError, match="^temperature must be positive, got 0.0$"):
        ODIN(model, temperature=0.0)


def test_fitted_state_round_trips_through_a_checkpoint(tmp_path) -> None:
    from hood.models.checkpoint import safe_load

    rng = np.random.default_rng(1)
    train = fs(rng.normal(size=(60, 4)), rng.normal(size=(60, 3)), rng.integers(0, 3, 60).tolist())
    test = fs(rng.normal(size=(9, 4)), rng.normal(size=(9, 3)))
    head = Head(rng.normal(size=(3, 4)).tolist(), [0.1, 0.2, 0.3])
    for make in (lambda: KNN(k=3), Mahalanobis, lambda: ReAct(head), lambda: ViM(head, dim=2)):
        a, b = make(), make()
        a.fit_features(train)
        torch.save({"state": a.state()}, tmp_path / "fit.pt")
        b.load_state(safe_load(tmp_path / "fit.pt")["state"])
        assert b.score_features(test) == pytest.approx(a.score_features(test))


def test_registry_order_and_method_names() -> None:
    assert all_methods() == ["heatmap", "heatmap+vim", "heatmap+vim+scale", "msp", "energy", "maxlogit", "odin", "gen", "mahalanobis", "knn", "react", "vim", "ash", "scale", "fdbd", "nac", "nci", "rmds", "adascale"]
    assert resolve_methods(["all"]) == all_methods()
    assert resolve_methods(["msp", "knn", "msp"]) == ["msp", "knn"]
    with pytest.raises(ConfigError, match="did you mean 'knn'"):
        resolve_methods(["knnn"])
    assert all(cls.name == name for name, cls in DETECTORS.items())


def test_parameters_are_the_constructors_keywords_with_their_defaults_written_once() -> None:
    """A detector's parameters are its keyword-only constructor arguments, named as in its paper; settings()
    reads back what is in force, which is what a fit or a threshold was made under."""
    from hood.jobs.detectors import parameters

    assert parameters() == {
        "heatmap": {}, "heatmap+vim": {"vim_weight": 1.0}, "heatmap+vim+scale": {"vim_weight": 1.0, "scale_weight": 1.0},
        "msp": {}, "energy": {}, "maxlogit": {}, "odin": {"temperature": 1000.0, "epsilon": 0.0014}, "gen": {"gamma": 0.1, "m": 100},
        "mahalanobis": {}, "knn": {"k": 50}, "react": {"percentile": 90.0}, "vim": {"dim": None}, "ash": {"percentile": 95.0},
        "scale": {"percentile": 85.0}, "fdbd": {},
        "nac": {"alpha": (100.0, 1000.0, 0.001, 0.001), "m": (50, 500, 50, 500), "o": (50, 100, 5, 100), "fit_images": 1000},
        "nci": {"alpha": 1e-4}, "rmds": {},
        "adascale": {"p_min": 75.0, "p_max": 85.0, "k1": 5.0, "k2": 1.0, "lmbda": 10.0, "o": 0.05, "fit_images": 5000}}
    assert KNN(k=7).settings() == {"k": 7} and ViM(_head()).settings() == {"dim": 2}  # ViM's rule: half the 4-d features


@pytest.mark.parametrize(("setting", "message"), [
    ("evaluate.params.knn.k=0", "evaluate.params.knn.k: k must be a positive integer, got 0"),
    ("evaluate.params.vim.dim=9", "evaluate.params.vim.dim: dim must be in [1, 3] for 4-d features, got 9"),
    ("evaluate.params.react.percentile=0", "evaluate.params.react.percentile: percentile must be in (0, 100], got 0"),
    ("evaluate.params.odin.epsilon=-1", "evaluate.params.odin.epsilon: epsilon must be non-negative, got -1"),
])
def test_a_detector_names_its_parameter_and_the_jobs_layer_the_config_key(setting: str, message: str) -> None:
    """Detectors know their parameters, not where the values came from; evaluate and score, which set them
    from the config, lead the detector's message with the key (one line, as every config error)."""
    from hood.config import resolve
    from hood.jobs.detectors import build_detectors

    method, param = setting.split(".")[2:4]
    value = yaml_value(setting.split("=")[1])
    with pytest.raises(DetectorParameterError) as alone:
        DETECTORS[method](_head(), **{param.split("=")[0]: value})
    assert "evaluate" not in str(alone.value) and str(alone.value) == message.split(": ", 1)[1]
    with pytest.raises(ConfigError) as keyed:
        build_detectors(["msp", method], _head(), resolve(None, {}, [setting]), torch.device("cpu"))
    assert str(keyed.value) == message


def yaml_value(text: str) -> object:
    import yaml

    return yaml.safe_load(text)


def test_odin_survives_weights_touched_under_inference_mode() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(3))
    images = torch.randint(0, 256, (2, 3, 6, 6), dtype=torch.uint8)
    model(images.float()).sum()  # materialize the lazy layer
    with torch.inference_mode():
        model.to(memory_format=torch.channels_last)  # what feature extraction may do to a shared classifier
    scores = ODIN(model, device="cpu").score_images(images)
    assert scores.shape == (2,) and np.all(scores < 0)


def _tiny_decoder(seed: int = 0) -> torch.nn.Module:
    from hood.models.decoder import HeatmapDecoder, decoder_spec_for

    torch.manual_seed(seed)
    return HeatmapDecoder(decoder_spec_for("wrn10_2", 4, 3)).eval()


def _head(seed: int = 4) -> Head:
    rng = np.random.default_rng(seed)
    return Head(rng.normal(size=(3, 4)).tolist(), [0.1, 0.2, 0.3])


def _parts(dec: torch.nn.Module, head: torch.nn.Module | None = None, percentile: float = 50.0) -> dict:
    from hood.detectors.heatmap import HeatmapDetector

    head = head or _head()
    return {"heatmap": HeatmapDetector(head, dec, device="cpu"), "vim": ViM(head, dim=2), "scale": SCALE(head, percentile=percentile)}


def test_combinations_are_z_score_sums_of_their_parts_standardized_on_held_out_id_rows(tmp_path) -> None:
    """heatmap+vim = z_heatmap + vim_weight z_vim, heatmap+vim+scale adds scale_weight z_scale, each z on the ID
    statistics of the rows they were fitted on; the fit round-trips through a checkpoint (weights_only)."""
    from hood.detectors.combined import HeatmapViM, HeatmapViMScale
    from hood.models.checkpoint import safe_load

    rng = np.random.default_rng(6)
    train = fs(rng.normal(size=(40, 4)), rng.normal(size=(40, 3)) * 3)
    test = fs(rng.normal(size=(7, 4)), rng.normal(size=(7, 3)) * 3)
    parts = _parts(_tiny_decoder())
    parts["vim"].fit_features(train)
    z = {}
    for name, d in parts.items():
        s, s_tr = d.score_features(test).astype(np.float64), d.score_features(train).astype(np.float64)
        z[name] = (s - s_tr.mean()) / s_tr.std(ddof=1)
    fit = {n: d.score_features(train) for n, d in parts.items()}
    on_test = {n: d.score_features(test) for n, d in parts.items()}
    pair = HeatmapViM(vim_weight=2.5)
    pair.fit_scores(fit)
    assert pair.combine(on_test) == pytest.approx(z["heatmap"] + 2.5 * z["vim"], rel=1e-9)
    tri = HeatmapViMScale(vim_weight=2.0, scale_weight=0.5)
    tri.fit_scores(fit)
    assert tri.combine(on_test) == pytest.approx(z["heatmap"] + 2.0 * z["vim"] + 0.5 * z["scale"], rel=1e-9)
    assert tri.settings() == {"vim_weight": 2.0, "scale_weight": 0.5}
    torch.save({"state": tri.state()}, tmp_path / "fit.pt")
    again = HeatmapViMScale(vim_weight=2.0, scale_weight=0.5)
    again.load_state(safe_load(tmp_path / "fit.pt")["state"])
    assert again.combine(on_test) == pytest.approx(tri.combine(on_test))
    with pytest.raises(DetectorParameterError, match=r"^scale_weight must be in \[0, 100\], got -1$"):
        HeatmapViMScale(scale_weight=-1)
    with pytest.raises(ValueError, match="is not fitted"):
        HeatmapViM().combine(on_test)


def test_combination_fit_rows_are_seeded_and_leave_out_the_decoders_rows() -> None:
    from hood.detectors.combined import MIN_UNSEEN, fit_rows

    seen = torch.arange(0, 150, 3)
    rows = fit_rows(150, seen, 0)
    assert len(rows) == 100 and not set(rows.tolist()) & set(seen.tolist())
    assert torch.equal(fit_rows(150, seen, 0), rows)
    almost_all = torch.arange(150 - MIN_UNSEEN + 1)  # fewer than MIN_UNSEEN unseen rows: all rows, biased but usable
    assert torch.equal(fit_rows(150, almost_all, 0), torch.arange(150))


def test_combinations_need_a_decoder() -> None:
    from hood.detectors import uses_decoder

    assert uses_decoder(["msp", "heatmap+vim"]) and uses_decoder(["heatmap"]) and not uses_decoder(["msp", "knn", "vim"])


def test_a_combinations_threshold_is_tied_to_its_parts_settings() -> None:
    """SCALE's percentile changes the spread a combination's statistics measured, and another decoder changes the
    heatmap's: either must change the settings its threshold and fit were made under."""
    from hood.detectors.combined import HeatmapViMScale
    from hood.jobs.detectors import method_settings

    dec = _tiny_decoder()
    combos = {"heatmap+vim+scale": HeatmapViMScale()}
    base = method_settings("heatmap+vim+scale", _parts(dec), combos)
    assert base["parts"]["scale"] == {"percentile": 50.0} and set(base["parts"]["heatmap"]) == {"decoder"}
    assert method_settings("heatmap+vim+scale", _parts(dec, percentile=25.0), combos) != base
    with torch.no_grad():
        next(dec.parameters()).add_(0.5)  # a retrained decoder
    assert method_settings("heatmap+vim+scale", _parts(dec), combos) != base


def test_evaluate_fits_read_the_stage_maps_of_the_fit_rows_only(tmp_path, monkeypatch) -> None:
    """With a skip-input decoder, the ID-train pass keeps the maps of the combinations' fit rows alone
    (the baselines read features and logits) and the statistics equal those made with every row's maps."""
    from types import SimpleNamespace

    import hood.jobs.evaluate as ev
    from hood.config import resolve
    from hood.data.images import ImageSet
    from hood.detectors.combined import fit_rows
    from hood.engine.features import extract_features
    from hood.jobs.detectors import build_detectors
    from hood.models.decoder import HeatmapDecoder, decoder_spec_for
    from hood.models.registry import build_classifier

    torch.manual_seed(0)
    model = build_classifier("wrn10_2", 3).eval()
    decoder = HeatmapDecoder(decoder_spec_for("wrn10_2", model.feature_dim, 3, fw_layers=3)).eval()
    train = ImageSet("train", torch.randint(0, 256, (150, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 3, (150,)))
    cfg = resolve(None, {"data.id": str(tmp_path), "run.device": "cpu"}, ["evaluate.params.vim.dim=8"])
    detectors, combos = build_detectors(["heatmap+vim", "vim"], model, cfg, torch.device("cpu"), decoder)
    seen: list = []
    real = ev.extract_features
    monkeypatch.setattr(ev, "extract_features", lambda *a, **k: seen.append(a[8]) or real(*a, **k))
    plan = SimpleNamespace(fit=train, decoder_rows=torch.arange(0, 150, 3), fit_draw=None, fit_rows=None)  # the decoder saw every third row
    ev.fit_detectors(detectors, combos, SimpleNamespace(path=tmp_path), model, plan, "f", cfg, torch.device("cpu"), ev.NullReporter())
    rows = fit_rows(150, plan.decoder_rows, cfg.run.seed)
    assert sorted(set(seen[0].tolist())) == sorted(rows.tolist())  # the combination's 100 rows alone
    every = extract_features(model, train.images, torch.device("cpu"), num_maps=2, labels=train.labels)
    assert every.map_rows is None and every.maps[0].shape[0] == 150
    held = every.take(rows)
    alone = type(combos["heatmap+vim"])()
    alone.fit_scores({p: detectors[p].score_features(held) for p in alone.parts})
    torch.testing.assert_close((alone.mean, alone.std), (combos["heatmap+vim"].mean, combos["heatmap+vim"].std))

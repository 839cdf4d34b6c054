"""Each baseline against a case small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from hood.detectors import DETECTORS, Detector, DetectorContext, all_methods
from hood.detectors.energy import EnergyDetector
from hood.detectors.knn import KNNDetector
from hood.detectors.mahalanobis import MahalanobisDetector
from hood.detectors.maxlogit import MaxLogitDetector
from hood.detectors.msp import MSPDetector
from hood.detectors.odin import ODINDetector
from hood.detectors.react import ReActDetector
from hood.detectors.vim import ViMDetector, default_dim
from hood.engine.features import FeatureSet
from hood.errors import ConfigError, DetectorParameterError
from hood.jobs.evaluate import resolve_methods


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
    assert MSPDetector().score(f) == pytest.approx([-math.exp(10) / (math.exp(10) + 2), -1 / 3, -0.6])
    assert EnergyDetector().score(f) == pytest.approx([-math.log(math.exp(10) + 2), -math.log(3), -math.log(5)])
    assert MaxLogitDetector().score(f) == pytest.approx([-10.0, 0.0, -math.log(3.0)])


def test_knn_distance_to_kth_neighbour_of_normalized_features() -> None:
    bank = fs([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])  # unit directions 0, 90, 180 degrees after normalizing
    query = fs([[5.0, 0.0], [1.0, 1.0]])  # 0 and 45 degrees
    d1 = KNNDetector(k=1)
    d1.fit(bank)
    assert d1.score(query) == pytest.approx([0.0, 2 * math.sin(math.radians(22.5))], abs=1e-6)
    d2 = KNNDetector(k=2, chunk=1)  # chunking must not change anything
    d2.fit(bank)
    assert d2.score(query) == pytest.approx([math.sqrt(2), 2 * math.sin(math.radians(22.5))], abs=1e-6)
    d9 = KNNDetector(k=9)  # more neighbours than training points: the farthest one
    d9.fit(bank)
    assert d9.score(query)[0] == pytest.approx(2.0, abs=1e-6)
    with pytest.raises(DetectorParameterError, match="^k must be a positive integer, got 0$"):
        KNNDetector(k=0)


def test_mahalanobis_matches_the_closed_form_on_a_gaussian_sample() -> None:
    rng = np.random.default_rng(0)
    cov = np.array([[2.0, 0.6], [0.6, 1.0]])
    means = np.array([[0.0, 0.0], [6.0, 6.0]])
    x = np.concatenate([rng.multivariate_normal(m, cov, 4000) for m in means])
    y = np.repeat([0, 1], 4000)
    d = MahalanobisDetector()
    d.fit(fs(x, labels=y.tolist()))
    mu = np.stack([x[y == c].mean(0) for c in (0, 1)])
    centered = x - mu[y]
    prec = np.linalg.inv(centered.T @ centered / len(x))
    q = np.array([[0.0, 0.0], [6.0, 6.0], [3.0, -3.0], [1.0, 0.5]])
    expect = [min((v - m) @ prec @ (v - m) for m in mu) for v in q]
    assert d.score(fs(q)) == pytest.approx(expect, rel=1e-6, abs=1e-9)
    # and the fit recovers the generating Gaussian
    assert np.linalg.inv(prec) == pytest.approx(cov, abs=0.1)
    assert d.score(fs(q))[2] > d.score(fs(q))[3]


def test_react_clips_at_the_id_train_percentile_then_takes_energy() -> None:
    head = Head([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.5])
    d = ReActDetector(head, percentile=90)
    d.fit(fs(np.arange(100, dtype=np.float32).reshape(50, 2)))  # activations 0..99
    assert d.clip == pytest.approx(89.1)  # numpy's linear percentile of 0..99
    z = np.array([[1.0, 2.0], [500.0, 3.0]])
    clipped = np.minimum(z, 89.1)
    logits = clipped @ np.eye(2) + [0.0, 0.5]
    expect = -np.log(np.exp(logits).sum(1))
    assert d.score(fs(z)) == pytest.approx(expect)
    with pytest.raises(DetectorParameterError, match=r"^percentile must be in \(0, 100\], got 0$"):
        ReActDetector(head, percentile=0)


def test_vim_virtual_logit_on_a_constructed_case() -> None:
    # 3-d features, 3 classes; the last layer's bias moves the origin to u = -W^+ b = (-1, 0, 2)
    w = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    b = [1.0, 0.0, -2.0]
    head = Head(w, b)
    d = ViMDetector(head, dim=2)
    assert d.origin.numpy() == pytest.approx([-1.0, 0.0, 2.0])
    rng = np.random.default_rng(0)
    # ID training data spread in x and y around u, with a small spread in z: the residual is the z axis
    train = np.c_[rng.normal(0, 3, 500), rng.normal(0, 2, 500), rng.normal(0, 0.1, 500)] + [-1.0, 0.0, 2.0]
    train_logits = train @ np.array(w).T + b
    d.fit(fs(train, train_logits))
    basis = d.residual_basis.numpy()
    assert abs(basis[:, 0]) == pytest.approx([0.0, 0.0, 1.0], abs=1e-2)
    alpha = train_logits.max(1).mean() / np.abs((train - [-1.0, 0.0, 2.0]) @ basis[:, 0]).mean()
    assert d.alpha == pytest.approx(alpha, rel=1e-6)
    q = np.array([[-1.0, 0.0, 2.0], [-1.0, 0.0, 5.0]])  # at the origin; 3 units along the residual
    q_logits = q @ np.array(w).T + b
    lse = np.log(np.exp(q_logits).sum(1))
    resid = np.abs((q - [-1.0, 0.0, 2.0]) @ basis[:, 0])
    assert d.score(fs(q, q_logits)) == pytest.approx(alpha * resid - lse, rel=1e-6)
    assert default_dim(128) == 64 and default_dim(512) == 256 and default_dim(768) == 512 and default_dim(2048) == 1000
    with pytest.raises(DetectorParameterError, match=r"^dim must be in \[1, 2\] for 3-d features, got 3$"):
        ViMDetector(head, dim=3)


def test_odin_without_perturbation_is_tempered_msp_and_perturbation_raises_confidence() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    images = torch.randint(0, 256, (7, 3, 4, 4), dtype=torch.uint8)
    x = images.float() / 127.5 - 1
    with torch.no_grad():
        logits = model(x)
    plain = ODINDetector(model, torch.device("cpu"), temperature=10.0, epsilon=0.0, batch_size=3).score_images(images)
    assert plain == pytest.approx((-torch.softmax(logits / 10, 1).amax(1)).numpy(), rel=1e-5)
    perturbed = ODINDetector(model, torch.device("cpu"), temperature=10.0, epsilon=0.002).score_images(images)
    assert np.all(perturbed <= plain + 1e-7) and np.any(perturbed < plain)
    with pytest.raises(DetectorParameterError, match="^temperature must be positive, got 0.0$"):
        ODINDetector(model, torch.device("cpu"), temperature=0.0)


def test_fitted_state_round_trips_through_a_checkpoint(tmp_path) -> None:
    from hood.models.checkpoint import safe_load

    rng = np.random.default_rng(1)
    train = fs(rng.normal(size=(60, 4)), rng.normal(size=(60, 3)), rng.integers(0, 3, 60).tolist())
    test = fs(rng.normal(size=(9, 4)), rng.normal(size=(9, 3)))
    head = Head(rng.normal(size=(3, 4)).tolist(), [0.1, 0.2, 0.3])
    for make in (lambda: KNNDetector(k=3), MahalanobisDetector, lambda: ReActDetector(head), lambda: ViMDetector(head, dim=2)):
        a, b = make(), make()
        a.fit(train)
        torch.save({"state": a.state()}, tmp_path / "fit.pt")
        b.load_state(safe_load(tmp_path / "fit.pt")["state"])
        assert b.score(test) == pytest.approx(a.score(test))


def test_registry_order_and_method_names() -> None:
    assert all_methods() == ["heatmap", "heatmap+vim", "heatmap+vim+scale", "msp", "energy", "maxlogit", "odin", "gen", "mahalanobis", "knn", "react", "vim", "ash", "scale", "fdbd"]
    assert resolve_methods(["all"]) == all_methods()
    assert resolve_methods(["msp", "knn", "msp"]) == ["msp", "knn"]
    with pytest.raises(ConfigError, match="did you mean 'knn'"):
        resolve_methods(["knnn"])
    ctx = DetectorContext(classifier=Head([[1.0]], [0.0]), device=torch.device("cpu"), options={"knn_k": 7})
    assert DETECTORS["knn"](ctx).k == 7


@pytest.mark.parametrize(("setting", "message"), [
    ("evaluate.knn_k=0", "evaluate.knn_k: k must be a positive integer, got 0"),
    ("evaluate.vim_dim=9", "evaluate.vim_dim: dim must be in [1, 3] for 4-d features, got 9"),
    ("evaluate.react_percentile=0", "evaluate.react_percentile: percentile must be in (0, 100], got 0.0"),
    ("evaluate.odin_epsilon=-1", "evaluate.odin_epsilon: epsilon must be non-negative, got -1.0"),
])
def test_a_detector_names_its_parameter_and_the_jobs_layer_the_config_key(setting: str, message: str) -> None:
    """Detectors know their parameters, not where the values came from; evaluate and score, which set them
    from the config, lead the detector's message with the key (one line, as every config error)."""
    from hood.config import resolve
    from hood.jobs.detectors import build_detectors

    cfg = resolve(None, {}, [setting])
    ctx = DetectorContext(classifier=_head(), device=torch.device("cpu"), options={"config": cfg})
    method = {"knn": "knn", "vim": "vim", "rea": "react", "odi": "odin"}[setting.split(".")[1][:3]]
    with pytest.raises(DetectorParameterError) as alone:
        DETECTORS[method](ctx)
    assert "evaluate" not in str(alone.value) and str(alone.value) == message.split(": ", 1)[1]
    with pytest.raises(ConfigError) as keyed:
        build_detectors(ctx, ["msp", method])
    assert str(keyed.value) == message


def test_odin_survives_weights_touched_under_inference_mode() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(3))
    images = torch.randint(0, 256, (2, 3, 6, 6), dtype=torch.uint8)
    model(images.float()).sum()  # materialize the lazy layer
    with torch.inference_mode():
        model.to(memory_format=torch.channels_last)  # what feature extraction may do to a shared classifier
    scores = ODINDetector(model, torch.device("cpu")).score_images(images)
    assert scores.shape == (2,) and np.all(scores < 0)


def _tiny_decoder(seed: int = 0) -> torch.nn.Module:
    from hood.models.decoder import HeatmapDecoder, decoder_spec_for

    torch.manual_seed(seed)
    return HeatmapDecoder(decoder_spec_for("wrn10_2", 4, 3)).eval()


def _head(seed: int = 4) -> Head:
    rng = np.random.default_rng(seed)
    return Head(rng.normal(size=(3, 4)).tolist(), [0.1, 0.2, 0.3])


def _combined(dec: torch.nn.Module, seed: int = 0, head: torch.nn.Module | None = None):  # noqa: ANN202
    """``heatmap+vim`` on ``dec`` and a 4-d, 3-class head, ViM with a 2-d principal subspace."""
    from hood.detectors.combined import CombinedDetector
    from hood.detectors.heatmap import HeatmapDetector

    ctx = DetectorContext(classifier=head or _head(), device=torch.device("cpu"), options={"vim_dim": 2})
    return CombinedDetector(HeatmapDetector(dec, torch.device("cpu")), {"vim": DETECTORS["vim"](ctx)}, seed=seed)


def _vim_alone(train: FeatureSet, head: torch.nn.Module | None = None) -> Detector:
    alone = DETECTORS["vim"](DetectorContext(classifier=head or _head(), device=torch.device("cpu"), options={"vim_dim": 2}))
    alone.fit(train)
    return alone


def test_heatmap_vim_sums_both_scores_standardized_on_id_train_and_round_trips(tmp_path) -> None:
    from hood.models.checkpoint import safe_load

    rng = np.random.default_rng(4)
    train = fs(rng.normal(size=(40, 4)), rng.normal(size=(40, 3)) * 3)
    test = fs(rng.normal(size=(7, 4)), rng.normal(size=(7, 3)) * 3)
    a, b = _combined(_tiny_decoder()), _combined(_tiny_decoder())
    assert a.name == "heatmap+vim"
    a.fit(train)
    alone = _vim_alone(train)
    p, p_tr = alone.score(test).astype(np.float64), alone.score(train).astype(np.float64)
    h, h_tr = a.heatmap.score(test).astype(np.float64), a.heatmap.score(train).astype(np.float64)
    z_h, z_p = (h - h_tr.mean()) / h_tr.std(ddof=1), (p - p_tr.mean()) / p_tr.std(ddof=1)
    assert a.score(test) == pytest.approx(z_h + z_p, rel=1e-5)
    a.weights["vim"] = 2.5  # evaluate.vim_weight: ViM's z-score counts 2.5 times
    assert a.score(test) == pytest.approx(z_h + 2.5 * z_p, rel=1e-5)
    torch.save({"state": a.state()}, tmp_path / "fit.pt")
    b.load_state(safe_load(tmp_path / "fit.pt")["state"])  # the partner's fit travels with it, weights_only
    b.weights["vim"] = 2.5
    assert b.score(test) == pytest.approx(a.score(test))
    assert a.params()["partners"] == {"vim": alone.params()} and set(a.state()["partners"]["vim"]) == {"residual_basis", "alpha"}
    built = DETECTORS["heatmap+vim"](DetectorContext(classifier=_head(), device=torch.device("cpu"),
                                                     decoder=_tiny_decoder(), options={"vim_weight": 1.5, "vim_dim": 2}))
    assert built.weights == {"vim": 1.5} and built.score_params() == {"vim_weight": 1.5}


def test_heatmap_vim_scale_adds_scale_weighted_and_shares_the_contexts_detectors(tmp_path) -> None:
    """heatmap+vim+scale = z_heatmap + vim_weight z_vim + scale_weight z_scale, each z on the same held-out
    rows; its heatmap, ViM and SCALE are the context's own, and its fit round-trips with both partners'."""
    from hood.models.checkpoint import safe_load

    rng = np.random.default_rng(6)
    train = fs(rng.normal(size=(40, 4)), rng.normal(size=(40, 3)) * 3)
    test = fs(rng.normal(size=(7, 4)), rng.normal(size=(7, 3)) * 3)
    options = {"vim_dim": 2, "vim_weight": 2.0, "scale_weight": 0.5, "scale_percentile": 50.0}
    ctx = DetectorContext(classifier=_head(), device=torch.device("cpu"), decoder=_tiny_decoder(), options=options)
    tri = ctx.detector("heatmap+vim+scale")
    assert tri.name == "heatmap+vim+scale" and tri.partners == {"vim": ctx.detector("vim"), "scale": ctx.detector("scale")}
    assert tri.score_params() == {"vim_weight": 2.0, "scale_weight": 0.5}
    tri.fit(train)
    z = []
    for d in (ctx.detector("heatmap"), ctx.detector("vim"), ctx.detector("scale")):
        s, s_tr = d.score(test).astype(np.float64), d.score(train).astype(np.float64)
        z.append((s - s_tr.mean()) / s_tr.std(ddof=1))
    assert tri.score(test) == pytest.approx(z[0] + 2.0 * z[1] + 0.5 * z[2], rel=1e-5)
    # SCALE's percentile changes the spread the fit measured: a fit made under another one must not match
    assert tri.params()["partners"]["scale"] == {"percentile": 50.0}
    other = DetectorContext(classifier=_head(), device=torch.device("cpu"), decoder=tri.heatmap.decoder,
                            options={**options, "scale_percentile": 25.0}).detector("heatmap+vim+scale")
    assert other.params() != tri.params()
    again = DetectorContext(classifier=_head(), device=torch.device("cpu"), decoder=tri.heatmap.decoder,
                            options=options).detector("heatmap+vim+scale")
    torch.save({"state": tri.state()}, tmp_path / "fit.pt")
    again.load_state(safe_load(tmp_path / "fit.pt")["state"])
    assert again.score(test) == pytest.approx(tri.score(test))


def test_heatmap_vim_fit_is_seeded_and_keyed_to_the_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    import hood.detectors.combined as comb

    monkeypatch.setattr(comb, "_FIT_ROWS", 10)  # fewer rows than the training set: a seeded subsample
    rng = np.random.default_rng(3)
    train = fs(rng.normal(size=(50, 4)), rng.normal(size=(50, 3)) * 3)
    dec = _tiny_decoder()
    a, b, c = _combined(dec, 0), _combined(dec, 0), _combined(dec, 1)
    for d in (a, b, c):
        d.fit(train)
    assert torch.equal(a.mean, b.mean) and not torch.equal(a.mean, c.mean)
    key = a.params()
    assert key == b.params() and key["decoder"] == comb.decoder_fingerprint(dec)
    with torch.no_grad():
        next(dec.parameters()).add_(0.5)  # a retrained decoder: the cached fit must not match any more
    assert _combined(dec, 0).params() != key


def test_combinations_need_a_decoder() -> None:
    from hood.detectors import NEEDS_DECODER, uses_decoder

    assert {"heatmap", "heatmap+vim"} <= NEEDS_DECODER and not NEEDS_DECODER & {"msp", "vim", "knn"}
    assert uses_decoder(["msp", "heatmap+vim"]) and not uses_decoder(["msp", "knn"])
    with pytest.raises(ValueError, match="needs a trained decoder"):
        DETECTORS["heatmap+vim"](DetectorContext(classifier=_head(), device=torch.device("cpu")))


def test_combination_standardizes_on_id_rows_the_decoder_never_saw() -> None:
    from hood.jobs.lookup import decoder_train_ids

    rng = np.random.default_rng(5)
    train = fs(rng.normal(size=(150, 4)), rng.normal(size=(150, 3)) * 3)
    seen = decoder_train_ids({"id_dataset": "cifar10", "num_id": 40, "seed": 3}, "cifar10", len(train))
    assert seen is not None and len(seen) == 40 and len(set(seen.tolist())) == 40
    assert decoder_train_ids({"id_dataset": "cifar100", "num_id": 40, "seed": 3}, "cifar10", 150) is None
    assert decoder_train_ids({"id_dataset": "cifar10"}, "cifar10", 150) is None  # older checkpoints: unknown
    d = _combined(_tiny_decoder())
    d.decoder_rows = seen
    d.fit(train)
    unseen = torch.ones(150, dtype=torch.bool)
    unseen[seen] = False
    held = train.take(torch.nonzero(unseen).flatten())
    vim = _vim_alone(train)  # ViM itself fits on every row; only the statistics leave the decoder's out
    assert float(d.mean[1]) == pytest.approx(float(vim.score(held).mean()))
    assert float(d.mean[0]) == pytest.approx(float(d.heatmap.score(held).mean()), rel=1e-5)
    almost_all = _combined(_tiny_decoder())
    almost_all.decoder_rows = torch.arange(120)  # fewer than 100 unseen rows: all rows, not a tiny sample
    almost_all.fit(train)
    assert float(almost_all.mean[1]) == pytest.approx(float(vim.score(train).mean()))


def test_score_memo_is_keyed_by_content_bounded_and_read_only() -> None:
    """Two FeatureSets holding the same rows (each combination takes its fit rows anew) share one entry;
    other rows, other labels or another detector do not; the oldest entry goes first."""
    from hood.detectors.memo import ScoreMemo, content_key

    rng = np.random.default_rng(8)
    feats = fs(rng.normal(size=(6, 4)), rng.normal(size=(6, 3)), [0, 1, 2, 0, 1, 2])
    rows = torch.tensor([1, 3, 4])
    assert content_key(feats.take(rows)) == content_key(feats.take(rows.clone()))
    assert content_key(feats.take(rows)) != content_key(feats.take(torch.tensor([1, 3, 5])))
    relabelled = fs(feats.features, feats.logits, [2, 1, 2, 0, 1, 2])
    assert content_key(relabelled) != content_key(feats)
    memo, calls = ScoreMemo(max_entries=2), []
    a, b = EnergyDetector(), EnergyDetector()

    def count(d):  # noqa: ANN001, ANN202
        return lambda f: calls.append(d) or d.score(f)

    first = memo.score(a, feats.take(rows), count(a))
    again = memo.score(a, feats.take(rows), count(a))
    assert calls == [a] and again is first and not first.flags.writeable
    assert memo.score(b, feats.take(rows), count(b)) == pytest.approx(first) and calls == [a, b]
    memo.score(a, feats, count(a))  # a third entry pushes out the oldest, a's on those rows
    memo.score(a, feats.take(rows), count(a))
    assert calls == [a, b, a, a] and (memo.hits, memo.misses) == (1, 4)
    memo.clear()
    memo.score(b, feats.take(rows), count(b))
    assert calls[-1] is b and memo.misses == 5


def test_a_context_builds_each_detector_once_and_combinations_share_it() -> None:
    ctx = DetectorContext(classifier=Head([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [0.0, 0.1, 0.2]), device=torch.device("cpu"),
                          decoder=_tiny_decoder(), options={"vim_dim": 1})
    pair = ctx.detector("heatmap+vim")
    assert pair is ctx.detector("heatmap+vim") and ctx.detector("vim") is pair.partners["vim"]
    assert ctx.detector("heatmap") is pair.heatmap and pair.memo is ctx.memo
    assert DetectorContext(classifier=nn.Identity(), device=torch.device("cpu")).detector("msp") is not ctx.detector("msp")


def test_evaluate_fits_read_the_stage_maps_of_the_fit_rows_only(tmp_path, monkeypatch) -> None:
    """With a skip-input decoder, the ID-train pass keeps the maps of the combinations' fit rows alone
    (the baselines read features and logits) and the fits equal those made with every row's maps."""
    from types import SimpleNamespace

    import hood.jobs.evaluate as ev
    from hood.config import resolve
    from hood.data.images import ImageSet
    from hood.detectors.combined import CombinedDetector
    from hood.engine.features import extract_features
    from hood.models.decoder import HeatmapDecoder, decoder_spec_for
    from hood.models.registry import build_classifier

    torch.manual_seed(0)
    model = build_classifier("wrn10_2", 3).eval()
    decoder = HeatmapDecoder(decoder_spec_for("wrn10_2", model.feature_dim, 3, fw_layers=3)).eval()
    train = ImageSet("train", torch.randint(0, 256, (150, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 3, (150,)))
    options = {"vim_dim": 8, "decoder_rows": torch.arange(0, 150, 3)}  # the decoder saw every third row
    ctx = DetectorContext(classifier=model, device=torch.device("cpu"), decoder=decoder, options=options)
    detectors = {m: ctx.detector(m) for m in ("heatmap+vim", "vim")}
    seen: list = []
    real = ev.extract_features
    monkeypatch.setattr(ev, "extract_features", lambda *a, **k: seen.append(a[8]) or real(*a, **k))
    cfg = resolve(None, {"data.id": str(tmp_path), "run.device": "cpu"}, None)
    ev._fit_detectors(detectors, SimpleNamespace(path=tmp_path), model, train, "f", cfg, torch.device("cpu"), ev.NullReporter())
    fit_rows = detectors["heatmap+vim"].map_rows(150)
    assert len(fit_rows) == 100 and not set(fit_rows.tolist()) & set(range(0, 150, 3))
    assert sorted(set(seen[0].tolist())) == sorted(fit_rows.tolist())  # the combination's 100 rows alone
    every = extract_features(model, train.images, torch.device("cpu"), num_maps=2, labels=train.labels)
    assert every.map_rows is None and every.maps[0].shape[0] == 150
    alone = DetectorContext(classifier=model, device=torch.device("cpu"), decoder=decoder, options=dict(options)).detector("heatmap+vim")
    assert isinstance(alone, CombinedDetector)
    alone.fit(every)
    torch.testing.assert_close((alone.mean, alone.std), (detectors["heatmap+vim"].mean, detectors["heatmap+vim"].std))

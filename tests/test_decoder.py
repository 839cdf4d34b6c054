"""The heatmap decoder: shapes for every setting and fw_layers, output range, score, loss value, and
the training job's fixes of METHOD.md defects 3 (true feature min/max) and 4 (features computed once)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from hood.config import resolve
from hood.engine.features import extract_features
from hood.models.checkpoint import load_classifier, load_decoder
from hood.models.decoder import HeatmapDecoder, decoder_spec_for, heatmap_score
from hood.models.registry import NATIVE_SIZE, build_classifier

# (arch, classes, input size, code size, filters) of the paper's five settings plus the small test WRN
SETTINGS = [
    ("resnet18", 10, 32, 100, (512, 256, 128, 64)),
    ("resnet18", 100, 32, 512, (512, 256, 128, 64)),
    ("wrn40_2", 10, 32, 128, (256, 128, 64, 32)),
    ("wrn40_2", 100, 32, 128, (256, 128, 64, 32)),
    ("resnet50", 200, 64, 512, (2048, 1024, 512, 256, 128)),
    ("wrn10_2", 10, 32, 128, (256, 128, 64, 32)),
]

def batch_for(size: int) -> int:
    """Two images, or one for the 64x64 ResNet50 setting (its decoder alone is ~4 GFLOP per image)."""
    return 1 if size == 64 else 2


_FORWARD: dict[tuple[str, int], tuple[torch.nn.Module, object]] = {}


def classifier_output(arch: str, classes: int, size: int):
    """One forward_all per (arch, classes) for the whole module: the CPU cost is in the classifiers."""
    if (arch, classes) not in _FORWARD:
        torch.manual_seed(0)
        model = build_classifier(arch, classes).eval()
        same_encoder = [k for k in _FORWARD if k[0] == arch]
        if same_encoder:  # seeded: the encoder equals the cached one, only ``linear`` differs
            other, out = _FORWARD[same_encoder[0]]
            assert torch.equal(model.conv1.weight, other.conv1.weight)
            with torch.no_grad():
                out = type(out)(out.features, model.logits_from_features(out.features), out.maps)
        else:
            with torch.no_grad():
                out = model.forward_all(torch.randn(batch_for(size), 3, size, size))
        _FORWARD[(arch, classes)] = (model, out)
    return _FORWARD[(arch, classes)]


def decoder_variant(base: HeatmapDecoder, fw_layers: int) -> HeatmapDecoder:
    """The same weights under another fw_layers (built on the meta device: no second random init)."""
    spec = decoder_spec_for_like(base, fw_layers)
    with torch.device("meta"):
        dec = HeatmapDecoder(spec)
    dec.load_state_dict(base.state_dict(), strict=True, assign=True)  # fw_layers adds no parameters
    return dec.eval()


def decoder_spec_for_like(base: HeatmapDecoder, fw_layers: int):
    s = base.spec
    return type(s)(s.feature_dim, s.num_classes, s.code_dim, s.filters, fw_layers)


@pytest.mark.parametrize(("arch", "classes", "size", "code", "filters"), SETTINGS)
def test_decoder_shapes_for_every_setting_and_fw_layers(arch: str, classes: int, size: int, code: int, filters: tuple) -> None:
    model, out = classifier_output(arch, classes, size)
    spec = decoder_spec_for(arch, model.feature_dim, classes, 1)
    assert (spec.code_dim, spec.filters, spec.out_size) == (code, filters, size)
    assert NATIVE_SIZE[arch] == size
    n = batch_for(size)
    assert out.features.shape == (n, model.feature_dim)
    base = HeatmapDecoder(spec).eval()
    assert base.linear.in_features == model.feature_dim + classes and base.linear.out_features == code
    pred = out.logits.argmax(1)
    assert len(out.maps) >= 3  # every architecture offers the maps for fw_layers 2-4
    outputs = {}
    for fw in (1, 2, 3, 4):
        dec = base if fw == 1 else decoder_variant(base, fw)
        with torch.no_grad():
            h = dec(out.features, pred, out.maps)
        assert h.shape == (n, 3, size, size)
        assert torch.isfinite(h).all() and h.abs().max() <= 1.0
        outputs[fw] = h
    # each extra skip map changes the heatmap (the maps are really added)
    for fw in (2, 3, 4):
        assert not torch.allclose(outputs[fw], outputs[fw - 1])


def test_fw_layers_needs_the_maps() -> None:
    model, out = classifier_output("wrn10_2", 10, 32)
    dec = HeatmapDecoder(decoder_spec_for("wrn10_2", model.feature_dim, 10, 3)).eval()
    with pytest.raises(ValueError, match="fw_layers=3"):
        dec(out.features, out.logits.argmax(1), None)
    with pytest.raises(ValueError):
        dec(out.features, out.logits.argmax(1), out.maps[-1:])


def test_output_stays_in_range_for_extreme_inputs() -> None:
    dec = HeatmapDecoder(decoder_spec_for("wrn10_2", 128, 10)).eval()
    with torch.no_grad():
        dec.head.bias.fill_(50.0)  # saturate tanh
        h = dec(torch.full((2, 128), 1e4), torch.tensor([0, 9]))
    assert h.min() >= -1.0 and h.max() <= 1.0 and h.max() > 0.99


def test_code_input_is_minmax_features_and_one_hot() -> None:
    dec = HeatmapDecoder(decoder_spec_for("wrn10_2", 4, 3))
    dec.set_feature_range(-2.0, 6.0)
    z = dec.code_input(torch.tensor([[-2.0, 2.0, 6.0, 0.0]]), torch.tensor([2]))
    assert z.tolist() == [[0.0, 0.5, 1.0, 0.25, 0.0, 0.0, 1.0]]


def test_heatmap_score_hand_case() -> None:
    h = torch.zeros(2, 3, 2, 2)
    h[0, 0] = torch.tensor([[0.2, -0.8], [0.0, 0.4]])
    h[0, 1] = torch.tensor([[-0.6, 0.1], [0.0, 0.0]])
    h[0, 2] = torch.tensor([[0.0, 0.0], [-0.3, 0.0]])
    # channel-max of |h| per pixel: 0.6, 0.8, 0.3, 0.4 -> mean 0.525; the second image is all zero
    assert heatmap_score(h).tolist() == pytest.approx([0.525, 0.0])


def test_heatmap_loss_hand_case() -> None:
    from hood.engine.decoder_training import heatmap_loss

    h = torch.tensor([[[[0.5, -0.5]]], [[[0.1, 0.0]]]])
    x = torch.tensor([[[[0.0, 0.0]]], [[[0.2, -0.4]]]])
    t = torch.tensor([[[[1.0, 0.0]]], [[[0.2, -0.4]]]])
    # sample 0: x_hat - t = (-0.5, -0.5), w = (1 + 5*1, 1) -> 6*0.25 + 1*0.25 = 1.75
    # sample 1: x_hat - t = (0.1, 0),    w = (1 + 5*0.2, 3) -> 2*0.01 = 0.02;  mean over the batch
    assert float(heatmap_loss(h, x, t)) == pytest.approx((1.75 + 0.02) / 2)
    assert float(heatmap_loss(h, x, t, weight=0.0)) == pytest.approx((0.5 + 0.01) / 2)
    # summed over channels and pixels, not averaged: doubling the image doubles the loss
    h2, x2, t2 = (torch.cat([a, a], dim=1) for a in (h, x, t))
    assert float(heatmap_loss(h2, x2, t2)) == pytest.approx(1.77)


def _tiny_cfg(id_folder: Path, ood_folder: Path, clf: Path, out: Path, epochs: int = 2):
    return resolve(None, {}, [
        f"data.id={id_folder}", f"data.aux={ood_folder}", "model.arch=wrn10_2", f"model.classifier={clf}",
        "decoder.num_ood=5", f"decoder.epochs={epochs}", "decoder.batch_size=8", "evaluate.batch_size=5",
        "run.device=cpu", f"run.out={out}",
    ])


def test_train_decoder_job_fixes_the_defects(
    ood_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import write_image_folder

    id_folder = tmp_path / "small-id"  # 12 training images: the decoder epochs are the cost here
    write_image_folder(id_folder / "train", per_class=4)
    write_image_folder(id_folder / "test", per_class=1, offset=50)
    import hood.jobs.train_decoder as job
    from hood.data.sources import load_id_splits
    from hood.models.wideresnet import WideResNet

    calls = {"n": 0}
    real_stage_maps = WideResNet.stage_maps

    def counting_stage_maps(self, x):  # every classifier pass (forward, forward_all) goes through here
        calls["n"] += 1
        return real_stage_maps(self, x)

    monkeypatch.setattr(WideResNet, "stage_maps", counting_stage_maps)
    during_fit = {}
    real_fit = job.fit_decoder

    def watched_fit(*args, **kwargs):
        before = calls["n"]
        losses = real_fit(*args, **kwargs)
        during_fit["calls"] = calls["n"] - before
        during_fit["epochs"] = len(losses)
        return losses

    monkeypatch.setattr(job, "fit_decoder", watched_fit)
    # a classifier whose features are strictly positive (final BN shifted up), so "starting from 0" shows
    from hood.models.checkpoint import classifier_state, save_checkpoint

    model = build_classifier("wrn10_2", 3).eval()
    with torch.no_grad():
        model.bn1.bias.fill_(1.0)
    tiny_classifier = tmp_path / "clf_pos.pt"
    save_checkpoint(classifier_state(model, "wrn10_2", ["class0", "class1", "class2"], {}), tiny_classifier)
    cfg = _tiny_cfg(id_folder, ood_folder, tiny_classifier, tmp_path / "dec", epochs=2)
    run = job.train_decoder(cfg)
    monkeypatch.setattr(WideResNet, "stage_maps", real_stage_maps)

    assert during_fit == {"calls": 0, "epochs": 2}  # defect 4: the frozen classifier never runs per epoch
    # 12 ID images and 5 outliers in batches of 5, plus one probe of the stage maps: independent of epochs
    assert calls["n"] == math.ceil(12 / 5) + math.ceil(5 / 5) + 1
    assert run.info["status"] == "complete" and len(run.info["losses"]) == 2

    # defect 3: the stored range is the true min/max over all ID-train features
    clf = load_classifier(tiny_classifier)
    decoder, _ = load_decoder(run.file("decoder.pt"), clf)
    train = load_id_splits(str(id_folder), tmp_path, 32)["train"]
    feats = extract_features(clf.model, train.images, torch.device("cpu"), batch_size=7).features
    assert float(decoder.feat_min) == pytest.approx(float(feats.min()), rel=1e-5, abs=1e-6)
    assert float(decoder.feat_max) == pytest.approx(float(feats.max()), rel=1e-5, abs=1e-6)
    # ... which the public implementation's range (starting from 0, first sample of each batch) misses
    assert float(decoder.feat_min) > 0.01
    assert float(decoder.feat_max) > float(decoder.feat_min)

    # the sampled outliers and each one's own prototype are saved with the run (defect 1)
    import json

    from hood.data.sources import load_image_set
    from hood.engine.prototypes import nearest_prototypes

    saved = json.loads(run.file("ood_samples.json").read_text())
    assert saved["pool_size"] == 12 and saved["seed"] == 0
    assert len(saved["indices"]) == 5 == len(set(saved["indices"]))
    pool = load_image_set(str(ood_folder), tmp_path, 32).subset(saved["indices"])
    cpu = torch.device("cpu")
    idf, oodf = extract_features(clf.model, train.images, cpu), extract_features(clf.model, pool.images, cpu)
    assert saved["prototype_id_rows"] == nearest_prototypes(oodf.features, oodf.preds, idf.features, idf.preds).tolist()


def test_image_size_the_decoder_cannot_produce_is_a_known_error(id_folder: Path, ood_folder: Path, tiny_classifier: Path, tmp_path: Path) -> None:
    from hood.errors import HoodError
    from hood.jobs.train_decoder import train_decoder

    cfg = _tiny_cfg(id_folder, ood_folder, tiny_classifier, tmp_path / "dec16", epochs=1)
    cfg.data.image_size = 16
    with pytest.raises(HoodError, match="image_size"):
        train_decoder(cfg)


def test_output_scale_widens_the_range_and_round_trips() -> None:
    """decoder.output_scale multiplies tanh; the paper's 1 is the default, and old specs (no key) load as 1."""
    from hood.models.decoder import DecoderSpec

    spec = decoder_spec_for("wrn10_2", 128, 10, output_scale=2.0)
    torch.manual_seed(0)
    dec = HeatmapDecoder(spec).eval()
    with torch.no_grad():
        dec.head.bias.fill_(50.0)  # drive tanh into saturation
        h = dec(torch.rand(3, 128), torch.tensor([0, 1, 2]))
    assert torch.allclose(h.amax(), torch.tensor(2.0)) and h.abs().max() <= 2.0
    assert DecoderSpec.from_dict(spec.to_dict()) == spec
    legacy = {k: v for k, v in decoder_spec_for("wrn10_2", 128, 10).to_dict().items() if k != "output_scale"}
    assert DecoderSpec.from_dict(legacy).output_scale == 1.0


def test_outlier_views_are_seeded_crop_flips_of_the_outliers() -> None:
    """View 0 is the outliers as sampled; every other view is a shifted (padded mid-grey) and possibly
    mirrored copy of its own outlier, the same for the same seed (a resumed run rebuilds them)."""
    from hood.engine.decoder_training import augmented_views

    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (6, 3, 8, 8), generator=g, dtype=torch.uint8)
    v = augmented_views(x, 3, seed=5)
    assert v.shape == (18, 3, 8, 8) and v.dtype == torch.uint8
    assert torch.equal(v[:6], x) and torch.equal(v, augmented_views(x, 3, seed=5))
    assert not torch.equal(v[6:], augmented_views(x, 3, seed=6)[6:])
    padded = torch.nn.functional.pad(x.int(), (4, 4, 4, 4), value=128)
    for row in range(6, 18):
        src, img = row % 6, v[row].int()
        matches = [
            (dy, dx, flip)
            for dy in range(9) for dx in range(9) for flip in (False, True)
            if torch.equal(img, (lambda c: c.flip(-1) if flip else c)(padded[src, :, dy:dy + 8, dx:dx + 8]))
        ]
        assert matches, f"view row {row} is no crop/flip of outlier {src}"
    assert augmented_views(x, 1, seed=5) is x  # the paper: no copies


def test_an_epoch_draws_every_id_row_and_one_view_per_outlier() -> None:
    from hood.engine.decoder_training import DecoderData
    from hood.engine.features import FeatureSet

    n_id, n_ood, views = 4, 5, 3
    n = n_id + views * n_ood
    data = DecoderData(torch.zeros(n, 3, 2, 2, dtype=torch.uint8), FeatureSet(torch.zeros(n, 2), torch.zeros(n, 2)),
                       torch.zeros(n, dtype=torch.long), n_id, views)
    assert data.n_ood == n_ood
    seen_views = set()
    for epoch in range(8):
        rows = data.epoch_rows(torch.Generator().manual_seed(epoch))
        assert len(rows) == n_id + n_ood and len(set(rows.tolist())) == len(rows)
        assert sorted(r for r in rows.tolist() if r < n_id) == list(range(n_id))
        outl = [r - n_id for r in rows.tolist() if r >= n_id]
        assert sorted(r % n_ood for r in outl) == list(range(n_ood))  # each outlier exactly once
        seen_views |= {r // n_ood for r in outl}
    assert seen_views == {0, 1, 2}  # over epochs every view is drawn
    one = DecoderData(data.images, data.feats, data.target_idx, n_id + 10, 1)  # views=1: a plain permutation
    assert torch.equal(one.epoch_rows(torch.Generator().manual_seed(1)), torch.randperm(n, generator=torch.Generator().manual_seed(1)))


def test_an_epoch_draws_one_view_of_every_id_image_and_of_every_outlier() -> None:
    from hood.engine.decoder_training import DecoderData
    from hood.engine.features import FeatureSet

    n_id, id_views, n_ood, views = 4, 3, 5, 2
    n = id_views * n_id + views * n_ood
    data = DecoderData(torch.zeros(n, 3, 2, 2, dtype=torch.uint8), FeatureSet(torch.zeros(n, 2), torch.zeros(n, 2)),
                       torch.zeros(n, dtype=torch.long), n_id, views, id_views)
    assert data.n_ood == n_ood
    seen_id_views, seen_views = set(), set()
    for epoch in range(10):
        rows = data.epoch_rows(torch.Generator().manual_seed(epoch)).tolist()
        assert len(rows) == n_id + n_ood and len(set(rows)) == len(rows)
        ids = [r for r in rows if r < id_views * n_id]
        assert sorted(r % n_id for r in ids) == list(range(n_id))  # each ID image exactly once
        outl = [r - id_views * n_id for r in rows if r >= id_views * n_id]
        assert sorted(r % n_ood for r in outl) == list(range(n_ood))  # each outlier exactly once
        seen_id_views |= {r // n_id for r in ids}
        seen_views |= {r // n_ood for r in outl}
    assert seen_id_views == {0, 1, 2} and seen_views == {0, 1}


def test_id_views_are_their_own_targets_and_prototypes_come_from_the_images_as_sampled() -> None:
    from hood.engine.decoder_training import ID_STREAM, augmented_views, build_decoder_data
    from hood.engine.features import FeatureSet
    from hood.engine.prototypes import nearest_prototypes

    g = torch.Generator().manual_seed(0)
    n_id, n_ood = 6, 4
    id_images = augmented_views(torch.randint(0, 256, (n_id, 3, 8, 8), generator=g, dtype=torch.uint8), 2, 0, ID_STREAM)
    assert not torch.equal(id_images[n_id:], augmented_views(id_images[:n_id], 2, 0)[n_id:])  # its own stream
    id_f = torch.randn(2 * n_id, 3, generator=g)
    id_f[n_id:] = id_f[:n_id] + 0.01  # the copies sit right next to their originals in feature space
    ood_f = torch.randn(n_ood, 3, generator=g)
    logits = torch.zeros(2 * n_id + n_ood, 2)  # one predicted class for all
    data, proto = build_decoder_data(id_images, torch.zeros(n_ood, 3, 8, 8, dtype=torch.uint8),
                                     FeatureSet(torch.cat([id_f, ood_f]), logits), torch.device("cpu"), id_views=2)
    assert data.n_id == n_id and data.id_views == 2 and data.n_ood == n_ood
    assert data.target_idx[: 2 * n_id].tolist() == list(range(2 * n_id))  # every ID view: h = 0
    assert proto.tolist() == nearest_prototypes(ood_f, torch.zeros(n_ood, dtype=torch.long), id_f[:n_id],
                                                torch.zeros(n_id, dtype=torch.long)).tolist()
    assert int(proto.max()) < n_id
    assert torch.equal(data.images[data.target_idx[2 * n_id :]], id_images[proto])


def test_train_decoder_with_id_views_records_them_and_keeps_the_true_feature_range(
    id_folder: Path, ood_folder: Path, tiny_classifier: Path, tmp_path: Path
) -> None:
    run, saved, clf, idf, _ = _trained_with(id_folder, ood_folder, tiny_classifier, tmp_path, id_views=3)
    assert saved["id_views"] == 3
    dec, _ = load_decoder(run.file("decoder.pt"), clf)
    assert float(dec.feat_min) == pytest.approx(float(idf.features.min()), abs=1e-6)  # of the images as sampled
    assert float(dec.feat_max) == pytest.approx(float(idf.features.max()), abs=1e-6)
    assert all(r < len(idf.features) for r in saved["prototype_id_rows"])


def _trained_with(id_folder: Path, ood_folder: Path, tiny_classifier: Path, tmp_path: Path, **decoder: int | str):
    """A one-epoch train-decoder run with ``decoder`` settings; returns the run, its ood_samples.json, and the
    classifier features of the ID training images and of the sampled outliers (as sampled), recomputed."""
    import json

    from hood.data.sources import load_id_splits, load_image_set
    from hood.jobs.train_decoder import train_decoder

    cfg = _tiny_cfg(id_folder, ood_folder, tiny_classifier, tmp_path / "run", epochs=1)
    for key, value in decoder.items():
        setattr(cfg.decoder, key, value)
    run = train_decoder(cfg)
    saved = json.loads(run.file("ood_samples.json").read_text())
    clf = load_classifier(tiny_classifier)
    train = load_id_splits(str(id_folder), tmp_path, 32)["train"]
    pool = load_image_set(str(ood_folder), tmp_path, 32).subset(saved["indices"])
    assert run.info["status"] == "complete"
    return run, saved, clf, extract_features(clf.model, train.images, torch.device("cpu")), pool.images


def test_train_decoder_with_outlier_views_pairs_each_view_with_its_own_prototype(
    id_folder: Path, ood_folder: Path, tiny_classifier: Path, tmp_path: Path
) -> None:
    from hood.engine.decoder_training import augmented_views
    from hood.engine.prototypes import nearest_prototypes

    _, saved, clf, idf, outliers = _trained_with(id_folder, ood_folder, tiny_classifier, tmp_path, ood_views=2)
    assert saved["views"] == 2 and len(saved["prototype_id_rows"]) == 10
    oodf = extract_features(clf.model, augmented_views(outliers, 2, 0), torch.device("cpu"))
    assert saved["prototype_id_rows"] == nearest_prototypes(oodf.features, oodf.preds, idf.features, idf.preds).tolist()


def test_train_decoder_with_k_prototypes_saves_each_outliers_k_nearest(
    id_folder: Path, ood_folder: Path, tiny_classifier: Path, tmp_path: Path
) -> None:
    from hood.engine.prototypes import nearest_prototypes

    run, saved, clf, idf, outliers = _trained_with(id_folder, ood_folder, tiny_classifier, tmp_path, prototype_k=3)
    assert saved["prototype_k"] == 3 and all(len(row) == 3 for row in saved["prototype_id_rows"])
    oodf = extract_features(clf.model, outliers, torch.device("cpu"))
    assert saved["prototype_id_rows"] == nearest_prototypes(oodf.features, oodf.preds, idf.features, idf.preds, k=3).tolist()
    assert math.isfinite(run.info["losses"][-1])


def test_train_decoder_with_pixel_prototypes_records_the_space_and_pairs_by_pixels(
    id_folder: Path, ood_folder: Path, tiny_classifier: Path, tmp_path: Path
) -> None:
    from hood.data.sources import load_id_splits
    from hood.engine.prototypes import nearest_prototypes

    run, saved, clf, idf, outliers = _trained_with(id_folder, ood_folder, tiny_classifier, tmp_path, prototype_space="pixels")
    assert saved["prototype_space"] == "pixels"
    oodf = extract_features(clf.model, outliers, torch.device("cpu"))
    id_images = load_id_splits(str(id_folder), tmp_path, 32)["train"].images
    want = nearest_prototypes(outliers.flatten(1).double(), oodf.preds, id_images.flatten(1).double(), idf.preds)
    assert saved["prototype_id_rows"] == want.tolist()
    assert math.isfinite(run.info["losses"][-1])


def test_saturation_loss_hand_case() -> None:
    from hood.engine.decoder_training import saturation_loss

    a = torch.tensor([[[[0.0, 2.9], [-5.0, 4.0]]], [[[3.0, -3.5], [0.0, 0.0]]]])  # 2 samples x 1 x 2 x 2
    # sample 1: (5-3)^2 + (4-3)^2 = 5; sample 2: 0.5^2 = 0.25; mean over the batch
    assert float(saturation_loss(a)) == pytest.approx((5.0 + 0.25) / 2)


def test_saturation_penalty_revives_pixels_that_tanh_has_flattened() -> None:
    """A head bias of 20 saturates every pixel (tanh slope ~1e-17): the paper's loss cannot move it,
    the penalty brings the pre-activations back into tanh's working range within 40 steps."""
    from hood.engine.decoder_training import DecoderData, run_epoch
    from hood.engine.features import FeatureSet

    def trained(penalty: float) -> torch.Tensor:
        torch.manual_seed(0)
        dec = HeatmapDecoder(decoder_spec_for("wrn10_2", 8, 3))
        with torch.no_grad():
            dec.head.bias.fill_(20.0)
        n = 16
        g = torch.Generator().manual_seed(1)
        feats = FeatureSet(torch.rand(n, 8, generator=g), torch.randn(n, 3, generator=g))
        data = DecoderData(torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8), feats, torch.arange(n), n)
        opt = torch.optim.Adam(dec.parameters(), lr=0.05)
        for epoch in range(20):
            run_epoch(dec, opt, data, 8, 5.0, torch.Generator().manual_seed(epoch), torch.device("cpu"), saturation_penalty=penalty)
        with torch.no_grad():  # training-mode BatchNorm: the statistics the steps were taken with
            return dec(feats.features, feats.logits.argmax(1), with_pre_activation=True)[1]

    assert float(trained(0.0).amin()) > 10  # stuck: the heatmap loss has no gradient through flat tanh
    assert float(trained(1.0).abs().mean()) < 3


def test_graphs_apply_says_when_a_requested_graph_falls_back_to_eager() -> None:
    """Graph replay needs one CUDA process without torch.compile; asked for elsewhere on CUDA the user is
    told (naming the key), and on the CPU it is silently not applicable (the default is on everywhere)."""
    from hood.engine.cuda_graph import graphs_apply

    said: list[str] = []
    cuda = torch.device("cuda")
    assert graphs_apply(True, cuda, 1, False, "pretrain.cuda_graph", said.append) is True
    assert said == []
    assert graphs_apply(True, cuda, 2, False, "pretrain.cuda_graph", said.append) is False
    assert graphs_apply(True, cuda, 1, True, "decoder.cuda_graph", said.append) is False
    assert [s.split()[0] for s in said] == ["pretrain.cuda_graph", "decoder.cuda_graph"]
    assert graphs_apply(True, torch.device("cpu"), 1, False, "decoder.cuda_graph", said.append) is False
    assert graphs_apply(False, cuda, 2, False, "decoder.cuda_graph", said.append) is False
    assert len(said) == 2

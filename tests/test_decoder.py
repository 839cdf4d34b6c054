"""The heatmap decoder: shapes for every setting and fw_layers, output range, score, loss value, and
the training job's fixes of docs/method.md defects 3 (true feature min/max) and 4 (features computed once)."""

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
    import hood.engine.decoder_training as recipe
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
    real_fit = recipe.fit_decoder

    def watched_fit(*args, **kwargs):
        before = calls["n"]
        losses = real_fit(*args, **kwargs)
        during_fit["calls"] = calls["n"] - before
        during_fit["epochs"] = len(losses)
        return losses

    monkeypatch.setattr(recipe, "fit_decoder", watched_fit)
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


def test_specs_of_older_decoders_load_when_their_output_scale_is_the_one_built_here() -> None:
    """Older hoods saved an output scale in the spec; 1 (h = tanh) loads, any other is refused by name."""
    from hood.models.decoder import DecoderSpec

    spec = decoder_spec_for("wrn10_2", 128, 10)
    assert DecoderSpec.from_dict(spec.to_dict()) == spec and "output_scale" not in spec.to_dict()
    assert DecoderSpec.from_dict({**spec.to_dict(), "output_scale": 1.0}) == spec
    with pytest.raises(ValueError, match="scaled by 2.0"):
        DecoderSpec.from_dict({**spec.to_dict(), "output_scale": 2.0})


def test_an_epoch_is_a_seeded_permutation_of_every_row() -> None:
    from hood.engine.decoder_training import DecoderData
    from hood.engine.features import FeatureSet

    n = 9
    data = DecoderData(torch.zeros(n, 3, 2, 2, dtype=torch.uint8), FeatureSet(torch.zeros(n, 2), torch.zeros(n, 2)),
                       torch.zeros(n, dtype=torch.long), 4)
    rows = data.epoch_rows(torch.Generator().manual_seed(1))
    assert torch.equal(rows, torch.randperm(n, generator=torch.Generator().manual_seed(1)))
    assert sorted(rows.tolist()) == list(range(n))


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


def test_train_decoder_with_k_prototypes_saves_each_outliers_k_nearest(
    id_folder: Path, ood_folder: Path, tiny_classifier: Path, tmp_path: Path
) -> None:
    from hood.engine.prototypes import nearest_prototypes

    run, saved, clf, idf, outliers = _trained_with(id_folder, ood_folder, tiny_classifier, tmp_path, prototype_k=3)
    assert saved["prototype_k"] == 3 and all(len(row) == 3 for row in saved["prototype_id_rows"])
    oodf = extract_features(clf.model, outliers, torch.device("cpu"))
    assert saved["prototype_id_rows"] == nearest_prototypes(oodf.features, oodf.preds, idf.features, idf.preds, k=3).tolist()
    assert math.isfinite(run.info["losses"][-1])


def test_graphs_apply_on_one_cuda_process_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Graph replay is on wherever it applies (one CUDA process without torch.compile), never on the CPU, and
    HOOD_CUDA_GRAPHS=0 turns it off for debugging."""
    from hood.engine.cuda_graph import graphs_apply

    cuda = torch.device("cuda")
    monkeypatch.delenv("HOOD_CUDA_GRAPHS", raising=False)
    assert graphs_apply(cuda, 1, False) is True
    assert graphs_apply(cuda, 2, False) is False and graphs_apply(cuda, 1, True) is False
    assert graphs_apply(torch.device("cpu"), 1, False) is False
    monkeypatch.setenv("HOOD_CUDA_GRAPHS", "0")
    assert graphs_apply(cuda, 1, False) is False


def test_the_api_and_the_cli_train_the_same_decoder(id_folder: Path, ood_folder: Path, tiny_classifier: Path, tmp_path: Path) -> None:
    """One recipe: `hood train-decoder` and `hood.HeatmapDetector.fit`, given the same images, settings and seed,
    produce the same decoder weights (the noise floor measured alike, on the ID images trained on)."""
    from typer.testing import CliRunner

    import hood
    from hood.cli.app import app
    from hood.data.sources import load_id_splits, load_image_set

    r = CliRunner().invoke(app, ["train-decoder", "--dataset", str(id_folder), "--arch", "wrn10_2", "--classifier", str(tiny_classifier),
                                 "--aux", str(ood_folder), "--num-ood", "10", "--epochs", "2", "--batch-size", "8", "--fw-layers", "2",
                                 "--seed", "5", "--set", "decoder.noise_floor_quantile=0.9", "--device", "cpu", "--out", "cli", "-q"])
    assert r.exit_code == 0, r.output
    train = load_id_splits(str(id_folder), tmp_path, 32)["train"].images
    pool = load_image_set(str(ood_folder), tmp_path, 32).images
    det = hood.HeatmapDetector(load_classifier(tiny_classifier).model, fw_layers=2, device="cpu")
    det.fit(train, pool, epochs=2, batch_size=8, num_ood=10, seed=5, noise_floor_quantile=0.9)
    cli, _ = load_decoder(Path("cli/decoder.pt"))
    assert cli.spec == det.decoder.spec
    api = det.decoder.state_dict()
    for name, value in cli.state_dict().items():
        assert torch.equal(value, api[name]), name
    assert cli.noise_floor.item() > 0

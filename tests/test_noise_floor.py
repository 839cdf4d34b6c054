"""The heatmap's noise floor (decoder.noise_floor_quantile): the per-pixel shrink, its measurement on ID
images the decoder did not train on, and that it travels with the decoder into every score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hood.config import resolve
from hood.engine.features import FeatureSet, extract_features
from hood.engine.noise_floor import measure_noise_floor
from hood.errors import ConfigError
from hood.models.checkpoint import load_classifier, load_decoder
from hood.models.decoder import HeatmapDecoder, decoder_spec_for, heatmap_score, remove_floor


def test_remove_floor_hand_case() -> None:
    h = torch.zeros(1, 3, 1, 3)
    h[0, :, 0, 0] = torch.tensor([0.8, -0.4, 0.2])  # channel-max 0.8 -> (0.8 - 0.3) / 0.7: scaled by 0.5 / (0.7 * 0.8)
    h[0, :, 0, 1] = torch.tensor([-0.2, 0.1, 0.0])  # channel-max 0.2, under the floor -> 0
    h[0, :, 0, 2] = torch.tensor([0.0, 0.0, -1.0])  # saturated: stays -1
    out = remove_floor(h, 0.3)
    k = 0.5 / (0.7 * 0.8)
    assert out[0, :, 0, 0].tolist() == pytest.approx([0.8 * k, -0.4 * k, 0.2 * k])
    assert out[0, :, 0, 1].tolist() == [0.0, 0.0, 0.0]
    assert out[0, :, 0, 2].tolist() == pytest.approx([0.0, 0.0, -1.0])
    # the score of the shrunk heatmap: the pixel mean of what each channel-max exceeds the floor by, over 1 - floor
    assert heatmap_score(out).item() == pytest.approx((0.5 / 0.7 + 0.0 + 1.0) / 3)
    assert remove_floor(h, 0.0) is h  # no floor: the paper's heatmap, untouched


def _decoder_and_features(n: int = 40) -> tuple[HeatmapDecoder, FeatureSet]:
    torch.manual_seed(0)
    dec = HeatmapDecoder(decoder_spec_for("wrn40_2", 128, 10)).eval()
    feats = FeatureSet(torch.rand(n, 128), torch.randn(n, 10))
    return dec, feats


def test_measure_noise_floor_is_the_quantile_of_raw_pixel_magnitudes_and_leaves_the_decoder_as_it_was() -> None:
    dec, feats = _decoder_and_features()
    dec.noise_floor.fill_(0.05)  # a floor already set is not part of the measurement, and is kept
    with torch.inference_mode():
        dec.noise_floor.zero_()
        raw = dec(feats.features, feats.preds)
        dec.noise_floor.fill_(0.05)
    expected = torch.quantile(raw.abs().amax(1).flatten(), 0.9).item()
    assert measure_noise_floor(dec, feats, 0.9, torch.device("cpu"), batch_size=7) == pytest.approx(expected, rel=1e-6)
    assert dec.noise_floor.item() == pytest.approx(0.05) and not dec.training
    with pytest.raises(ValueError, match="quantile"):
        measure_noise_floor(dec, feats, 1.0, torch.device("cpu"))


def test_the_floor_applies_in_eval_mode_only_and_darkens_the_images_it_was_measured_on() -> None:
    dec, feats = _decoder_and_features()
    with torch.inference_mode():
        before = heatmap_score(dec(feats.features, feats.preds))
    dec.noise_floor.fill_(measure_noise_floor(dec, feats, 0.99, torch.device("cpu")))
    with torch.inference_mode():
        after = heatmap_score(dec(feats.features, feats.preds))
        dec.train()
        raw_in_training = heatmap_score(dec(feats.features, feats.preds))
    # 99% of the pixels are at or under the floor: the score is a small fraction of what it was
    assert float(after.median()) < 0.05 * float(before.median())
    assert float(raw_in_training.mean()) > 0.2  # training regresses the raw heatmap


def test_a_decoder_state_without_its_floor_is_refused() -> None:
    """The floor is part of every decoder hood saves: a state without it is not one of hood's decoders."""
    dec, _ = _decoder_and_features()
    state = {k: v for k, v in dec.state_dict().items() if k != "noise_floor"}
    with pytest.raises(RuntimeError, match="noise_floor"):
        HeatmapDecoder(dec.spec).load_state_dict(state)


def test_the_quantile_is_checked_with_its_key() -> None:
    with pytest.raises(ConfigError, match="decoder.noise_floor_quantile"):
        resolve(None, {}, ["decoder.noise_floor_quantile=1"])


def test_train_decoder_measures_the_floor_on_id_images_it_did_not_train_on(
    id_folder: Path, ood_folder: Path, tiny_classifier: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hood.engine.decoder_training as recipe
    import hood.jobs.train_decoder as job

    seen: dict[str, int] = {}
    real = recipe.measure_noise_floor

    def watched(decoder, feats, quantile, device, batch_size=500):  # noqa: ANN001, ANN202
        seen["rows"], seen["q"] = len(feats), quantile
        return real(decoder, feats, quantile, device, batch_size)

    monkeypatch.setattr(recipe, "measure_noise_floor", watched)
    cfg = resolve(None, {}, [
        f"data.id={id_folder}", f"data.aux={ood_folder}", "model.arch=wrn10_2", f"model.classifier={tiny_classifier}",
        "decoder.num_ood=5", "decoder.num_id=20", "decoder.epochs=1", "decoder.batch_size=8", "evaluate.batch_size=5",
        "decoder.noise_floor_quantile=0.95", "run.device=cpu", f"run.out={tmp_path / 'run'}",
    ])
    run = job.train_decoder(cfg)
    # 36 training images, 20 trained on: the floor reads the other 16
    assert seen == {"rows": 16, "q": 0.95}
    record = json.loads(run.file("run.json").read_text())["noise_floor"]
    decoder, ckpt = load_decoder(run.file("decoder.pt"), load_classifier(tiny_classifier))
    assert record["value"] == pytest.approx(decoder.noise_floor.item()) and decoder.noise_floor.item() > 0
    assert record["images"] == 16 and ckpt["meta"]["noise_floor"]["quantile"] == 0.95
    # the decoder as loaded scores with its floor: the ID test images come out darker than without it
    from hood.data.sources import load_id_splits

    test = load_id_splits(str(id_folder), tmp_path, 32)["test"]
    feats = extract_features(load_classifier(tiny_classifier).model, test.images, torch.device("cpu"))
    with torch.inference_mode():
        floored = heatmap_score(decoder(feats.features, feats.preds)).mean()
        decoder.noise_floor.zero_()
        raw = heatmap_score(decoder(feats.features, feats.preds)).mean()
    assert float(floored) < float(raw)


def test_a_floor_that_would_erase_every_heatmap_is_not_applied_and_said(
    id_folder: Path, ood_folder: Path, tiny_classifier: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a two-epoch training of WRN-40-2 measures (a floor of 1.000, every ID pixel lit): taken off every pixel
    it would score every image 0, so the decoder keeps none, run.json records why and the command says so."""
    from conftest import invoke

    import hood.engine.decoder_training as recipe

    monkeypatch.setattr(recipe, "measure_noise_floor", lambda *a, **k: 1.0)
    r = invoke("train-decoder", "--dataset", str(id_folder), "--set", "model.arch=wrn10_2", "--classifier", str(tiny_classifier),
               "--aux", str(ood_folder), "--num-ood", "5", "--num-id", "12", "--epochs", "1", "--batch-size", "8",
               "--set", "decoder.noise_floor_quantile=0.99", "--device", "cpu", "--out", "runs/short", "--quiet")
    assert r.exit_code == 0, r.output
    said = " ".join(r.stderr.split())
    assert "warning: the noise floor measured 1.000 (the 0.99 quantile of ID heatmap pixels) would erase every heatmap" in said
    assert "train it longer (more decoder.epochs)" in said
    record = json.loads(Path("runs/short/run.json").read_text())["noise_floor"]
    assert record["value"] == 0.0 and record["measured"] == 1.0 and "would erase" in record["refused"]
    decoder, _ = load_decoder(Path("runs/short/decoder.pt"), load_classifier(tiny_classifier))
    assert decoder.noise_floor.item() == 0.0

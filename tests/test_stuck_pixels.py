"""The stuck-pixel check: heatmap pixels that training left lit on every ID image are counted after
training, recorded in run.json and reported as a warning by the command and the Python API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_pipeline_cli import invoke

import hood
from hood.engine.features import FeatureSet
from hood.engine.heatmaps import stuck_pixels
from hood.models.decoder import HeatmapDecoder, decoder_spec_for

CPU = torch.device("cpu")


def _decoder_and_features(n: int = 30) -> tuple[HeatmapDecoder, FeatureSet]:
    torch.manual_seed(0)
    return HeatmapDecoder(decoder_spec_for("wrn40_2", 128, 10)), FeatureSet(torch.rand(n, 128), torch.randn(n, 10))


def test_a_healthy_decoder_has_none_and_a_saturated_channel_lights_every_pixel() -> None:
    dec, feats = _decoder_and_features()
    assert stuck_pixels(dec, feats, CPU, batch_size=7) == 0
    with torch.no_grad():
        dec.head.bias[0] = -50.0  # channel 0 at tanh(-50) = -1 wherever the image: every pixel is stuck
    dec.noise_floor.fill_(0.999)  # the floor would hide it: the check reads the raw heatmap
    dec.train()
    assert stuck_pixels(dec, feats, CPU, batch_size=7) == 32 * 32
    assert dec.training and dec.noise_floor.item() == pytest.approx(0.999)  # left as it was


class _Scripted(HeatmapDecoder):
    """Draws pixel (0, 1) lit on every image and pixel (0, 0) lit where the first feature is above 0.5."""

    def forward(self, features: torch.Tensor, pred: torch.Tensor, maps: list[torch.Tensor] | None = None) -> torch.Tensor:
        h = torch.zeros(len(features), 3, 32, 32)
        h[:, 2, 0, 1] = -0.95
        h[:, 0, 0, 0] = (features[:, 0] > 0.5).float()
        return h


def test_one_image_that_is_dark_there_means_the_pixel_is_not_stuck() -> None:
    scripted = _Scripted(decoder_spec_for("wrn40_2", 128, 10))
    f = torch.ones(5, 128)
    assert stuck_pixels(scripted, FeatureSet(f, torch.zeros(5, 10)), CPU, batch_size=2) == 2  # both lit on all five
    f[3, 0] = 0.0  # one image, in another batch than the first, dark at (0, 0)
    assert stuck_pixels(scripted, FeatureSet(f, torch.zeros(5, 10)), CPU, batch_size=2) == 1
    dec, feats = _decoder_and_features(4)
    with torch.no_grad():
        dec.head.weight.zero_()
        dec.head.bias[0] = -50.0
    dark = HeatmapDecoder(dec.spec)
    dark.load_state_dict(dec.state_dict())
    with torch.no_grad():
        dark.head.bias[0] = 0.0  # the same decoder, dark everywhere
    assert stuck_pixels(dec, feats, CPU) == 1024 and stuck_pixels(dark, feats, CPU) == 0


def test_train_decoder_records_the_check_and_warns_when_pixels_are_stuck(
    id_folder: Path, ood_folder: Path, tiny_classifier: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hood.engine.decoder_training as recipe

    seen: dict[str, int] = {}

    def five_stuck(decoder, feats, device, batch_size=500):  # noqa: ANN001, ANN202
        seen["rows"] = len(feats)
        return 5

    monkeypatch.setattr(recipe, "stuck_pixels", five_stuck)
    r = invoke("train-decoder", "--dataset", str(id_folder), "--set", "model.arch=wrn10_2", "--classifier", str(tiny_classifier),
               "--aux", str(ood_folder), "--num-ood", "5", "--num-id", "12", "--epochs", "1", "--batch-size", "8",
               "--device", "cpu", "--out", "runs/dec", "--quiet", "--json")
    assert r.exit_code == 0, r.output
    assert seen == {"rows": 12}  # every ID image it trained on, fewer than the 500 the check reads at most
    assert "warning: 5 of 1024 heatmap pixels stay lit on every ID image" in r.stderr
    assert "train longer (more --epochs than 1), or with another --seed" in " ".join(r.stderr.split())  # what helps first
    assert json.loads(r.stdout)["stuck_pixels"] == 5
    assert json.loads(Path("runs/dec/run.json").read_text())["stuck_pixels"] == {"pixels": 5, "of": 1024, "images": 12}


def test_a_healthy_run_records_zero_and_prints_no_warning(id_folder: Path, ood_folder: Path, tiny_classifier: Path) -> None:
    r = invoke("train-decoder", "--dataset", str(id_folder), "--set", "model.arch=wrn10_2", "--classifier", str(tiny_classifier),
               "--aux", str(ood_folder), "--num-ood", "5", "--num-id", "12", "--epochs", "1", "--batch-size", "8",
               "--device", "cpu", "--out", "runs/ok", "--quiet", "--json")
    assert r.exit_code == 0, r.output
    assert "warning" not in r.stderr
    assert json.loads(Path("runs/ok/run.json").read_text())["stuck_pixels"]["pixels"] == 0


def test_the_api_fit_warns_and_keeps_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    import hood.engine.decoder_training as recipe

    monkeypatch.setattr(recipe, "stuck_pixels", lambda decoder, feats, device, batch_size=500: 3)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 3)).eval()
    images = torch.randint(0, 256, (24, 3, 16, 16), dtype=torch.uint8)
    det = hood.HeatmapDetector(model)
    with pytest.warns(RuntimeWarning, match="3 of 256 heatmap pixels stay lit.*more epochs or another seed"):
        det.fit(images[:16], images[16:], epochs=1, batch_size=8)
    assert det.stuck_pixels == 3

"""Any classifier behind hood: torchvision models and a user's own nn.Module, from the CLI and wrapped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from test_pipeline_cli import assert_one_line_error, invoke
from torch import nn

from hood.models.adapter import WrappedClassifier, decoder_spec_of, find_final_linear
from hood.models.decoder import HeatmapDecoder


@pytest.mark.parametrize(("name", "size"), [("resnet18", 32), ("mobilenet_v3_small", 64), ("regnet_y_400mf", 96),
                                            ("vgg11", 224)])
def test_torchvision_models_get_a_decoder_of_their_resolution(name: str, size: int) -> None:
    model = torchvision.models.get_model(name, weights=None, num_classes=10).eval()
    wrapped = WrappedClassifier(model, size)
    fw = min(3, len(wrapped.skip_layers) + 1)
    spec = decoder_spec_of(wrapped, size, fw_layers=fw)
    x = torch.zeros(2, 3, size, size)
    with torch.no_grad():
        out = wrapped.forward_all(x)
        h = HeatmapDecoder(spec).eval()(out.features, out.logits.argmax(1), out.maps)
    assert h.shape == (2, 3, size, size)
    assert out.features.shape == (2, wrapped.linear.in_features) and torch.equal(out.logits, model(wrapped.to_model_input(x)))
    assert spec.out_size == size and fw == 3


def test_resnet_stage_maps_are_its_stages() -> None:
    wrapped = WrappedClassifier(torchvision.models.resnet18(num_classes=10), 224)
    assert wrapped.skip_layers[-3:] == ["layer2", "layer3", "layer4"]  # the stage outputs, not layers inside blocks
    assert find_final_linear(wrapped.net) == ("fc", wrapped.net.fc)


def test_unsupported_models_say_what_to_pass() -> None:
    with pytest.raises(ValueError, match="has no nn.Linear"):
        WrappedClassifier(torchvision.models.squeezenet1_1(num_classes=10), 32)
    tail = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.Softmax(dim=1))  # the output is not the linear's
    with pytest.raises(ValueError, match="name the classification layer with linear="):
        WrappedClassifier(nn.Sequential(nn.AdaptiveAvgPool2d(2), tail), 32)
    with pytest.raises(ValueError, match="4 to 7 times a power of two"):
        WrappedClassifier(torchvision.models.resnet18(num_classes=3), 100)


def test_cli_trains_a_decoder_for_a_torchvision_state_dict(id_folder: Path, ood_folder: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    sd = tmp_path / "sd.pt"
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), sd)
    common = ("--arch", "torchvision:resnet18", "--classifier", str(sd), "--dataset", str(id_folder), "--device", "cpu", "--quiet")
    r = invoke("train-decoder", *common, "--num-classes", "3", "--aux", str(ood_folder), "--num-ood", "8",
               "--epochs", "1", "--batch-size", "8", "--out", "runs/tv", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert Path(out["decoder"]).is_file() and len(out["losses"]) == 1
    r = invoke("evaluate", "--arch", "torchvision:resnet18", "--dataset", str(id_folder), "--ood", str(ood_folder),
               "--run", "runs/tv", "--methods", "heatmap,vim", "--device", "cpu", "--quiet", "--json")
    assert r.exit_code == 0, r.output
    assert set(json.loads(r.stdout)["results"]) == {"heatmap", "vim"}
    # the run is scored by `hood score` with the same architecture, read back from the run
    r = invoke("score", str(id_folder / "test" / "class0"), "--run", "runs/tv", "--json", "--quiet")
    assert r.exit_code == 0, r.output
    assert all(i["score"] is not None for i in json.loads(r.stdout)["images"])
    # a wrong class count is one line naming both counts
    r = invoke("train-decoder", *common, "--num-classes", "5", "--aux", str(ood_folder), "--num-ood", "8", "--epochs", "1")
    assert_one_line_error(r, "5", "3 classes")


def test_cli_builder_module_and_bad_weights(id_folder: Path, ood_folder: Path, tmp_path: Path) -> None:
    builder = tmp_path / "mynet.py"
    builder.write_text(
        "from torch import nn\n\n"
        "def build(num_classes):\n"
        "    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
        "                         nn.Linear(16, num_classes))\n"
    )
    ns: dict = {}
    exec(builder.read_text(), ns)  # noqa: S102 - the test's own builder, to save weights of the same model
    sd = tmp_path / "mine.pt"
    torch.save(ns["build"](3).state_dict(), sd)
    r = invoke("train-decoder", "--arch", f"module:{builder}:build", "--classifier", str(sd), "--dataset", str(id_folder),
               "--aux", str(ood_folder), "--num-ood", "8", "--epochs", "1", "--batch-size", "8", "--device", "cpu",
               "--quiet", "--out", "runs/mine")
    assert r.exit_code == 0, r.output
    wrong = tmp_path / "wrong.pt"
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), wrong)
    r = invoke("train-decoder", "--arch", f"module:{builder}:build", "--classifier", str(wrong), "--dataset", str(id_folder),
               "--aux", str(ood_folder), "--device", "cpu", "--quiet")
    assert_one_line_error(r, str(wrong))

"""The Python API: the docs' examples run as written, the API scores a command-line run bit for bit as
`hood score` does, a decoder fitted through the API learns, and bad input is one clear ValueError/TypeError."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from conftest import write_flat_folder, write_image_folder
from typer.testing import CliRunner

import hood
from hood.data.builtin import demo_digits, photo_crops, synthetic_set
from hood.metrics import ood_metrics

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def example(name: str) -> str:
    """The python block after ``<!-- example: name -->`` in docs/api.md."""
    found = re.search(rf"<!-- example: {name} -->\s*```python\n(.*?)```", DOCS.read_text(), re.S)
    assert found, f"docs/api.md has no example {name!r}"
    return found.group(1)


def run_example(name: str, changes: dict[str, str]) -> str:
    """Run an example with ``changes`` (each must occur in it: the docs cannot drift from the test) and return
    what it printed."""
    code = example(name)
    for old, new in changes.items():
        assert old in code, f"example {name!r} no longer contains {old!r}"
        code = code.replace(old, new)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_example_torchvision_model_on_an_image_folder(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), "my_resnet18.pt")
    write_image_folder(Path("data/train"), classes=2, per_class=6)
    write_image_folder(Path("data/test"), classes=2, per_class=3, offset=50)
    write_flat_folder(Path("data/outliers/any"), count=8, seed=1)
    for i, name in enumerate(["textures", "svhn"]):
        write_flat_folder(Path(f"data/ood/{name}/any"), count=4, seed=10 + i)
    out = run_example("torchvision", {"epochs=25": "epochs=1", 'device="auto"': 'device="cpu"', "batch_size=128": "batch_size=4"})
    rows = out.strip().splitlines()
    assert rows[0].split() == ["OOD", "set", "FPR95", "AUROC"] and [r.split()[0] for r in rows[1:]] == ["textures", "svhn"]
    assert Path("heatmap.pt").is_file()


def test_example_notebook_on_a_cli_run(pipeline: dict[str, Any]) -> None:
    write_flat_folder(Path("."), count=3, size=40)
    files = {f"photo{i + 1}.png": f"img{i:03d}.png" for i in range(3)}
    out = run_example("notebook", {"runs/my-decoder-run": str(pipeline["run"]), **files})
    assert out == ""
    assert Path("heatmaps.png").stat().st_size > 1000


def test_example_baselines_from_arrays() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=g) * 3
    fc = torch.nn.Linear(16, 3)
    torch.save(fc.state_dict(), "fc.pt")

    def draw(n: int, means: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y = torch.arange(n) % 3
        f = (means[y] + torch.randn(n, 16, generator=g)).relu()
        return f.numpy(), fc(f).detach().numpy(), y.numpy()

    other = torch.randn(3, 16, generator=g) * 3  # OOD: classes of their own
    (trf, trl, try_), (tef, tel, _), (odf, odl, _) = draw(300, centres), draw(60, centres), draw(60, other)
    np.savez("features.npz", train_features=trf, train_logits=trl, train_labels=try_, test_features=tef,
             test_logits=tel, ood_features=odf, ood_logits=odl)
    out = run_example("arrays", {})
    names = [line.split()[0] for line in out.strip().splitlines()]
    assert names == ["Energy", "KNN", "Mahalanobis", "ViM"]
    auroc = {line.split()[0]: float(line.split()[2].rstrip("%")) for line in out.strip().splitlines()}
    assert auroc["KNN"] > 90 and auroc["Mahalanobis"] > 90  # the OOD features are far from every ID class


def test_api_scores_a_cli_run_bit_for_bit_as_hood_score(pipeline: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from hood.cli.app import app

    folder = write_flat_folder(Path("mine"), count=5, size=32, seed=3)
    monkeypatch.setenv("HOOD_CACHE", str(pipeline["root"] / "_cache"))
    r = CliRunner().invoke(app, ["score", str(folder), "--run", str(pipeline["run"]), "--device", "cpu", "-q", "--json"])
    assert r.exit_code == 0, r.output
    cli = {Path(i["file"]).name: i["score"] for i in json.loads(r.stdout)["images"]}
    from PIL import Image

    names = sorted(cli)
    images = torch.stack([torch.from_numpy(np.array(Image.open(folder / n))).permute(2, 0, 1) for n in names])
    run = hood.load_run(pipeline["run"], device="cpu")
    api = run.score(images)
    assert [float(s) for s in api] == [cli[n] for n in names]  # floats through JSON: the same bits
    assert run.method == json.loads(r.stdout)["method"] == "heatmap+vim+scale"  # the same default: the recommended method
    assert run.threshold == pytest.approx(pipeline["results"]["thresholds"]["heatmap+vim+scale"])
    assert list(run.is_ood(images)) == [cli[n] > run.threshold for n in names]
    vim = hood.load_run(pipeline["run"], method="vim", device="cpu")  # a baseline from the fit evaluate cached
    assert vim.score(images).shape == (5,) and not np.array_equal(vim.score(images), api)


@pytest.fixture(scope="module")
def digits_detector() -> dict[str, Any]:
    """A torchvision ResNet18 for the ten digits, trained briefly, and a heatmap decoder fitted through the API."""
    torch.manual_seed(0)
    size = 16  # the smallest side a decoder draws that keeps the digits legible: keeps the test in seconds
    d = demo_digits(size)
    model = torchvision.models.resnet18(num_classes=10)
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    x = (d["train"].images.float() / 255 - mean) / std
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for i in range(0, len(x), 64):
        loss = torch.nn.functional.cross_entropy(model(x[i : i + 64]), d["train"].labels[i : i + 64])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    outliers = photo_crops("china.jpg", 400, size, seed=1).images
    det = hood.HeatmapDetector(model, device="cpu").fit(d["train"].images[:400], outliers, epochs=4, lr=1e-3, batch_size=32)
    return {"det": det, "model": model, "digits": d, "size": size}


def test_a_decoder_fitted_through_the_api_detects_the_builtin_ood_sets(digits_detector: dict[str, Any]) -> None:
    det, size = digits_detector["det"], digits_detector["size"]
    id_scores = det.predict(digits_detector["digits"]["test"].images)
    for name, images in [("flower", photo_crops("flower.jpg", 200, size, seed=2).images),
                         ("noise", synthetic_set("uniform-noise", 200, size).images)]:
        auroc = ood_metrics(id_scores, det.predict(images))["auroc"]
        assert auroc > 0.9, (name, auroc)
    assert det.losses[-1] < 0.5 * det.losses[0]  # the decoder learned, it did not merely start out separating


def test_save_load_predict_and_heatmaps(digits_detector: dict[str, Any], tmp_path: Path) -> None:
    det, model = digits_detector["det"], digits_detector["model"]
    images = digits_detector["digits"]["test"].images[:40]
    det.save(tmp_path / "det.pt")
    again = hood.HeatmapDetector.load(tmp_path / "det.pt", model, device="cpu")
    assert np.array_equal(again.predict(images), det.predict(images))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images.float() / 255, torch.zeros(40)), batch_size=16)
    # a DataLoader of [0, 1] floats, streamed in batches of 16: the same scores up to the convolutions' batch-size rounding
    np.testing.assert_allclose(det.predict(loader), det.predict(images), rtol=1e-5, atol=1e-6)
    maps = det.heatmaps(images[:3])
    assert maps.shape == (3, 3, 16, 16) and maps.abs().max() <= 1
    assert hood.overlay(images[0], maps[0]).size == (64, 64)
    other = torchvision.models.resnet18(num_classes=10).eval()
    with pytest.raises(ValueError, match="trained on another model"):
        hood.HeatmapDetector.load(tmp_path / "det.pt", other)


def test_baselines_score_images_and_arrays_alike(digits_detector: dict[str, Any]) -> None:
    model, d = digits_detector["model"], digits_detector["digits"]
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(d["train"].images[:300], d["train"].labels[:300]), batch_size=100)
    test = d["test"].images[:50]
    feats = hood.KNN(model, k=5).fit(train)
    holder: dict[str, torch.Tensor] = {}
    hook = model.fc.register_forward_hook(lambda m, i, o: holder.update(f=i[0], z=o))
    x = (test.float() / 255 - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        model(x)
    hook.remove()
    assert np.allclose(feats.predict(test), feats.predict((holder["f"].numpy(), holder["z"].numpy())), atol=1e-4)
    maha = hood.Mahalanobis(model).fit(train)  # labels from the (images, labels) DataLoader
    assert maha.predict(test).shape == (50,)
    combo = hood.HeatmapViM(digits_detector["det"]).fit(d["train"].images[400:800])
    assert np.isfinite(combo.predict(test)).all()
    # SCALE at weight 0 adds nothing; at weight 2 it changes the ranking's scores
    held = d["train"].images[400:800]
    none = hood.HeatmapViMScale(digits_detector["det"], scale_weight=0).fit(held).predict(test)
    assert np.allclose(none, combo.predict(test), atol=1e-6)
    assert not np.allclose(hood.HeatmapViMScale(digits_detector["det"], scale_weight=2).fit(held).predict(test), none)


def test_the_api_classes_are_the_evaluate_methods_with_their_defaults() -> None:
    """hood.ASH is the class `hood evaluate --methods ash` builds: one class, its parameters and defaults in its
    constructor alone."""
    from hood.detectors import COMBINATIONS, DETECTORS

    assert all(getattr(hood, cls.__name__) is cls for cls in DETECTORS.values())
    assert hood.HeatmapViM is COMBINATIONS["heatmap+vim"] and hood.HeatmapViMScale is COMBINATIONS["heatmap+vim+scale"]
    torch.manual_seed(0)
    fc = torch.nn.Linear(16, 5)
    with torch.no_grad():
        train, test = [(f.numpy(), fc(f).numpy()) for f in (torch.rand(200, 16), 2 * torch.rand(40, 16))]
    cases = [(hood.ASH, {"percentile": 70}, {"percentile": 95}), (hood.SCALE, {"percentile": 60}, {"percentile": 85}),
             (hood.GEN, {"gamma": 0.5, "m": 3}, {"gamma": 0.1, "m": 100}), (hood.FDBD, {}, {})]
    for cls, given, defaults in cases:
        named = cls(fc, **given).fit(train).predict(test)
        assert cls.keywords() == defaults
        assert np.allclose(cls(fc).fit(train).predict(test), cls(fc, **defaults).fit(train).predict(test)), cls
        if given:
            assert not np.allclose(named, cls(fc).fit(train).predict(test)), f"{cls.__name__}: the parameter was ignored"
    for cls in (hood.ASH, hood.SCALE, hood.FDBD):
        with pytest.raises(ValueError, match="pass the model"):
            cls()
    with pytest.raises(TypeError, match="unexpected keyword argument 'percentil'"):
        hood.ASH(fc, percentil=3)


def test_bad_input_is_one_clear_error(digits_detector: dict[str, Any]) -> None:
    det = digits_detector["det"]
    normalized = torch.randn(4, 3, 16, 16)
    with pytest.raises(ValueError, match=r"in \[0, 1\].*mean= and std="):
        det.predict(normalized)
    with pytest.raises(ValueError, match="resize the images to that size"):
        det.predict(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="folder/of/images: no such file"):  # a string is an image path
        det.predict("folder/of/images")
    with pytest.raises(TypeError, match="expected images"):
        det.predict(3)
    with pytest.raises(ValueError, match="not fitted"):
        hood.HeatmapDetector(digits_detector["model"]).predict(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="has no nn.Linear"):
        hood.HeatmapDetector(torchvision.models.squeezenet1_1(num_classes=10))
    with pytest.raises(ValueError, match="needs the classes"):
        hood.Mahalanobis().fit((np.zeros((4, 3)), np.zeros((4, 2))))
    with pytest.raises(ValueError, match="pass the model"):
        hood.ViM()


def test_import_hood_stays_light() -> None:
    code = "import sys, hood; assert 'torch' not in sys.modules, 'import hood loaded torch'; print(hood.__version__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert callable(hood.load_run) and hood.metrics.ood_metrics is not None


def test_predict_streams_an_iterable_of_batches(digits_detector: dict[str, Any]) -> None:
    """Scoring holds one batch at a time: a batch is released before the next is drawn."""
    import weakref

    det = digits_detector["det"]
    source = digits_detector["digits"]["test"].images[:64]
    alive: set[int] = set()
    most = 0

    def stream():  # noqa: ANN202 - a generator of batches, as a DataLoader is
        nonlocal most
        for i in range(0, len(source), 8):
            batch = source[i : i + 8].clone()
            alive.add(i)
            weakref.finalize(batch, alive.discard, i)
            most = max(most, len(alive))
            yield batch
            del batch

    scores = det.predict(stream())
    assert most <= 2, most
    np.testing.assert_allclose(scores, det.predict(source), rtol=1e-5, atol=1e-6)  # batches of 8: batch-size rounding only


def test_a_noise_floor_fitted_through_the_api_travels_with_the_saved_detector(digits_detector: dict[str, Any], tmp_path: Path) -> None:
    d, model = digits_detector["digits"], digits_detector["model"]
    outliers = photo_crops("china.jpg", 60, digits_detector["size"], seed=1).images
    det = hood.HeatmapDetector(model, device="cpu").fit(d["train"].images[:60], outliers, epochs=1, batch_size=32,
                                                        noise_floor_quantile=0.99)
    assert 0 < det.decoder.noise_floor.item() < 1
    # 99% of the training images' pixels are at or under the floor: they score near zero
    assert float(np.median(det.predict(d["train"].images[:60]))) < 0.01
    det.save(tmp_path / "floor.pt")
    again = hood.HeatmapDetector.load(tmp_path / "floor.pt", model, device="cpu")
    assert again.decoder.noise_floor.item() == det.decoder.noise_floor.item()
    assert np.array_equal(again.predict(d["test"].images[:20]), det.predict(d["test"].images[:20]))
    with pytest.raises(ValueError, match="noise_floor_quantile"):
        hood.HeatmapDetector(model).fit(d["train"].images[:8], outliers[:8], epochs=1, noise_floor_quantile=1.5)

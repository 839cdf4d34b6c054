"""A stored threshold is used only beside the decoder, classifier, ID set and image size it was measured on;
data sets' names stay apart from a run's own files; runs open from any directory; the Python API keeps its
word; bad input is one line; and what the terminal shows is what is on disk.

Each test names the case it covers (docs/reliability.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import invoke, one_line_error, score, tiny_config, write_flat_folder

from hood.errors import HoodError


def _new_decoder(run: Path, change: Any) -> None:
    """Another decoder.pt, whole (with the checksum of its own weights) as hood saves one: ``change`` edits its
    state dict in place."""
    from hood.fingerprint import fingerprint

    ckpt = torch.load(run / "decoder.pt", weights_only=False)
    change(ckpt["state_dict"])
    ckpt["checksum"] = fingerprint(ckpt["state_dict"].items())
    torch.save(ckpt, run / "decoder.pt")


def _retrain_decoder(run: Path) -> None:
    """What `train-decoder --resume R` leaves: another decoder.pt under the same results.json."""
    _new_decoder(run, lambda state: [v.add_(0.05) for v in state.values() if v.is_floating_point()])


# ---- thresholds tied to what they were measured on --------------------------------------------------------


def test_d18_resumed_decoder_refuses_old_thresholds(pipeline: dict[str, Any], run_copy: Path, mine: Path, tmp_path: Path) -> None:
    import hood
    from hood.jobs.visualize import visualize

    _retrain_decoder(run_copy)
    one_line_error(score(run_copy, str(mine), "--method", "heatmap"), 2, "heatmap threshold", "was set with decoder", f"hood evaluate --run {run_copy}")
    one_line_error(score(run_copy, str(mine), "--method", "heatmap+vim"), 2, "decoder")
    assert score(run_copy, str(mine), "--method", "msp").exit_code == 0  # a baseline does not read the decoder
    with pytest.raises(ValueError, match="was set with decoder"):
        hood.load_run(run_copy, method="heatmap", device="cpu")
    with pytest.raises(HoodError, match="heatmap scores saved in .* was set with decoder"):
        visualize(tiny_config(pipeline["root"], **{"data.ood": [str(pipeline["root"] / "ood")]}), str(run_copy), n=2,
                  out_dir=str(tmp_path / "figs"))


def test_d21_threshold_measured_at_another_image_size_or_id_set_is_refused(run_copy: Path, mine: Path) -> None:
    f = run_copy / "results.json"
    data = json.loads(f.read_text())
    for key, value, words in (("image_size", 64, "image_size 64, this scoring uses image_size 32"),
                              ("id_dataset", "lab", "id_dataset lab")):
        spoiled = json.loads(json.dumps(data))
        for m in spoiled["threshold_context"]:
            spoiled["threshold_context"][m][key] = value
        f.write_text(json.dumps(spoiled))
        one_line_error(score(run_copy, str(mine), "--method", "msp"), 2, "msp threshold", words)


def test_d21_evaluate_at_another_image_size_than_the_decoder_is_refused(pipeline: dict[str, Any], run_copy: Path, mine: Path) -> None:
    from hood.jobs.evaluate import evaluate

    before = (run_copy / "results.json").read_bytes()
    cfg = tiny_config(pipeline["root"], **{"evaluate.methods": ["heatmap"], "data.image_size": 64})
    with pytest.raises(HoodError, match="draws 32x32 heatmaps"):
        evaluate(cfg, str(run_copy))
    assert (run_copy / "results.json").read_bytes() == before
    from hood.jobs.localization import localize
    from hood.jobs.visualize import visualize

    for job in (localize, visualize):  # the heatmaps would be scored against, or laid over, 64x64 images
        with pytest.raises(HoodError, match="draws 32x32 heatmaps.*data.image_size=32"):
            job(cfg, str(run_copy))
    for given in ([], ["--threshold", "0", "--heatmaps", str(run_copy / "hm")]):  # not a broadcast error, not "rerun evaluate"
        one_line_error(score(run_copy, str(mine), "--method", "heatmap", "--set", "data.image_size=64", *given), 2,
                       "draws 32x32 heatmaps", "data.image_size=32")


def test_d44_evaluating_some_methods_keeps_the_others_thresholds(pipeline: dict[str, Any], run_copy: Path, mine: Path) -> None:
    from hood.jobs.evaluate import evaluate

    before = json.loads((run_copy / "results.json").read_text())
    evaluate(tiny_config(pipeline["root"], **{"evaluate.methods": ["msp"]}), str(run_copy))
    after = json.loads((run_copy / "results.json").read_text())
    assert after["thresholds"]["energy"] == before["thresholds"]["energy"]
    assert list(after["results"]) == ["msp"] and after["kept_from_earlier"][0] == "heatmap"
    assert any("energy" in n and "earlier" in n for n in after["notes"])
    r = score(run_copy, str(mine), "--method", "energy", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["threshold"] == before["thresholds"]["energy"]


def test_d36_a_stale_fit_names_the_setting_that_differs(run_copy: Path, mine: Path) -> None:
    one_line_error(score(run_copy, str(mine), "--method", "knn", "--set", "evaluate.params.knn.k=1"), 2,
                   "knn fit", "k 5", "k 1")


# ---- names of data sets apart from the run's own files ------------------------------------------------------


def _evaluate(run: Path, ood: str, *args: str) -> Any:
    return invoke("evaluate", "--run", str(run), "--ood", ood, "--methods", "msp", "--device", "cpu", "-q",
                  "--set", "run.num_threads=1", "--set", "model.arch=wrn10_2", *args)


def test_d22_two_ood_sets_of_one_name_are_refused(run_copy: Path, tmp_path: Path) -> None:
    a, b = write_flat_folder(tmp_path / "a" / "imgs", count=3), write_flat_folder(tmp_path / "b" / "imgs", count=2)
    before = (run_copy / "results.json").read_bytes()
    one_line_error(_evaluate(run_copy, f"{a},{b}"), 2, "two OOD sets are both named 'imgs'", str(a), str(b), "rename one")
    assert (run_copy / "results.json").read_bytes() == before


@pytest.mark.parametrize("name", ["id", "mean", "val-x"])
def test_d23_an_ood_set_named_like_the_runs_own_files_is_refused(run_copy: Path, tmp_path: Path, name: str) -> None:
    folder = write_flat_folder(tmp_path / name, count=3)
    before = (run_copy / "scores" / "msp" / "id.npz").read_bytes()
    one_line_error(_evaluate(run_copy, f"{folder},uniform-noise"), 2, f"is named '{name}'", "rename it")
    assert (run_copy / "scores" / "msp" / "id.npz").read_bytes() == before


def test_d33_an_empty_ood_list_is_one_line(run_copy: Path) -> None:
    one_line_error(_evaluate(run_copy, ""), 2, "no OOD test set to evaluate", "--ood")


# ---- a run opens from any directory -------------------------------------------------------------------------


def test_d20_config_yaml_keeps_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from hood import locks
    from hood.config import resolve
    from hood.runs import create_run

    (tmp_path / "w" / "pre").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "w")
    cfg = resolve(None, {"model.classifier": "pre/classifier.pt", "run.out": "R"})
    create_run(cfg, "train-decoder")
    locks.release_all()
    saved = yaml.safe_load((tmp_path / "w" / "R" / "config.yaml").read_text())
    assert saved["model"]["classifier"] == str(tmp_path / "w" / "pre" / "classifier.pt")
    assert saved["run"]["out"] == str(tmp_path / "w" / "R") and cfg.model.classifier == "pre/classifier.pt"


def test_d20_a_run_with_a_relative_classifier_opens_from_another_directory(run_copy: Path, mine: Path, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    import hood

    f = run_copy / "config.yaml"
    saved = yaml.safe_load(f.read_text())
    saved["model"]["classifier"] = "pre/classifier.pt"  # what an older hood kept: relative to where it trained
    f.write_text(yaml.safe_dump(saved))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert score(run_copy, str(mine), "--method", "msp").exit_code == 0
    assert hood.load_run(run_copy, method="msp", device="cpu").threshold is not None


# ---- a run being written is named as such -------------------------------------------------------------------


def test_d35_a_run_a_live_train_decoder_holds_is_said_to_be_in_use(run_copy: Path, mine: Path) -> None:
    from test_reliability import writer_elsewhere

    import hood

    info = json.loads((run_copy / "run.json").read_text())
    (run_copy / "run.json").write_text(json.dumps({**info, "status": "running"}))
    with writer_elsewhere(run_copy, "train-decoder") as pid:
        err = one_line_error(score(run_copy, str(mine)), 2, f"in use by `hood train-decoder` (pid {pid})")
        assert "resume" not in err
        with pytest.raises(ValueError, match=f"in use by `hood train-decoder` \\(pid {pid}\\)"):
            hood.load_run(run_copy, device="cpu")  # a resume replaces decoder.pt under it: refused as score refuses
    one_line_error(score(run_copy, str(mine)), 2, "is incomplete (status running)", "hood train-decoder --resume")


# ---- one line, never a traceback ------------------------------------------------------------------------------


def _builder(tmp_path: Path, body: str) -> str:
    f = tmp_path / "net_user.py"
    f.write_text("import torch\n" + body + "\ndef build(num_classes):\n    return torch.nn.Linear(4, num_classes)\n")
    return f"module:{f}:build"


@pytest.mark.parametrize(("body", "words"), [
    ("import sys\nsys.exit(0)", "line 3: importing it called sys.exit(0)"),
    ("raise RuntimeError('no GPU here')", "line 2: importing it raised RuntimeError (no GPU here)"),
    ("def f(:\n    pass", "line 2: SyntaxError"),
])
def test_d27_d28_a_model_file_that_exits_raises_or_does_not_parse_is_one_line(tmp_path: Path, id_folder: Path, body: str,
                                                                            words: str) -> None:
    from hood.models.adapter import external_model

    arch = _builder(tmp_path, body)
    with pytest.raises(ValueError, match="net_user.py") as err:
        external_model(arch, 3)
    assert words in str(err.value) and "\n" not in str(err.value)
    weights = tmp_path / "sd.pt"
    torch.save(torch.nn.Linear(4, 3).state_dict(), weights)
    r = invoke("evaluate", "--arch", arch, "--classifier", str(weights), "--methods", "msp", "--ood", "uniform-noise",
               "--dataset", str(id_folder), "--device", "cpu", "-q")
    one_line_error(r, 2, "net_user.py", words)


def test_d28_a_build_function_that_raises_names_its_line(tmp_path: Path) -> None:
    from hood.models.adapter import external_model

    f = tmp_path / "net_fn.py"
    f.write_text("def build(num_classes):\n    raise KeyError('depth')\n")
    with pytest.raises(ValueError, match=r"net_fn.py, line 2: build\(\) raised KeyError"):
        external_model(f"module:{f}:build", 3)


def test_d43_a_class_count_from_the_data_set_does_not_name_num_classes(tmp_path: Path) -> None:
    from hood.models.checkpoint import load_external_classifier

    f = tmp_path / "net_ok.py"
    f.write_text("import torch\ndef build(num_classes):\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, num_classes))\n")
    weights = tmp_path / "sd7.pt"
    torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 7)).state_dict(), weights)
    with pytest.raises(HoodError) as err:
        load_external_classifier(weights, f"module:{f}:build", 2, 10, classes_from="the ID data set lab")
    assert "classifies 7 classes, but the ID data set lab has 10" in str(err.value) and "--num-classes" not in str(err.value)


def _registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **file: Any) -> None:
    entry = {"role": "ood", "layout": "images", "dir": "myset",
             "files": [{"name": "myset.tar.gz", "url": "http://127.0.0.1:9/x.tar.gz", "format": "tar.gz", "sha256": "0" * 64, **file}]}
    (tmp_path / "r.json").write_text(json.dumps({"sets": {"myset": entry}}))
    monkeypatch.setenv("HOOD_REGISTRY", str(tmp_path / "r.json"))


@pytest.mark.parametrize(("file", "words"), [
    ({"name": "my\u0000set.tar.gz"}, "name must be a plain file name"),
    ({"url": "javascript:alert(1)"}, "'javascript:alert(1)' is not a URL hood can fetch"),
    ({"url": "ftp://127.0.0.1/x"}, "'ftp://127.0.0.1/x' is not a URL hood can fetch"),
    ({"mirrors": ["javascript:x"]}, "'javascript:x' is not a URL hood can fetch"),
])
def test_d31_d32_registry_entries_with_null_bytes_or_unfetchable_urls_are_refused_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: dict[str, Any], words: str
) -> None:
    import time

    _registry(tmp_path, monkeypatch, **file)
    start = time.monotonic()
    one_line_error(invoke("download", "myset", "--root", str(tmp_path / "data"), "-q"), 2, "r.json", words)
    assert time.monotonic() - start < 5


def test_d29_a_registry_that_is_a_device_or_fifo_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    os.mkfifo(tmp_path / "fifo.json")
    for path in ("/dev/zero", str(tmp_path / "fifo.json")):
        monkeypatch.setenv("HOOD_REGISTRY", path)
        one_line_error(invoke("download", "--list"), 2, "is not a regular file")


@pytest.mark.parametrize(("value", "words"), [("x" * 100_000, "names no known data set: 'xxx"),
                                             ("/x" * 50_000, "data set path /x/x")])
def test_d34_an_overlong_data_set_value_is_an_unknown_set_cut_in_the_error_line(run_copy: Path, value: str, words: str) -> None:
    err = one_line_error(_evaluate(run_copy, "uniform-noise", "--set", "data.id=" + value), 2, words)
    assert len(err) < 1000  # the value cut, not echoed whole


def test_d34_control_characters_in_an_error_are_escaped() -> None:
    from hood.cli.errors import one_line

    assert one_line("bad\nname \x1b[31mred\x00") == "bad\\nname \\x1b[31mred\\x00"


# ---- the Python API keeps its word ---------------------------------------------------------------------------


def test_d30_is_ood_refuses_a_threshold_that_is_not_a_finite_number(run_copy: Path) -> None:
    import hood

    run = hood.load_run(run_copy, method="msp", device="cpu")
    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match="threshold must be a finite number, got nan"):
        run.is_ood(images, threshold=float("nan"))
    with pytest.raises(TypeError, match="threshold must be a number, got 'abc'"):
        run.is_ood(images, threshold="abc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^threshold must be a finite number"):  # no --threshold: that is hood score's
        hood.load_run(run_copy, method="msp", device="cpu", threshold=float("inf"))


def test_d41_metrics_of_no_scores_are_refused() -> None:
    from hood.metrics import ood_metrics

    with pytest.raises(ValueError, match="no ID scores"):
        ood_metrics(np.array([]), np.array([0.5]))
    with pytest.raises(ValueError, match="OOD scores hold NaN"):
        ood_metrics(np.array([0.1]), np.array([np.nan]))


# ---- bounded memory and time per input ------------------------------------------------------------------------


def test_d19_a_long_strip_is_refused_and_a_wide_one_is_decoded_at_the_results_size(tmp_path: Path) -> None:
    import io
    import tracemalloc

    from PIL import Image

    from hood.data.images import UnreadableImage, decode_image

    def png(w: int, h: int) -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (w, h), (200, 10, 10)).save(buf, format="PNG")
        return buf.getvalue()

    with pytest.raises(UnreadableImage, match="1 x 1,000,000 pixels, an aspect ratio above 100:1"):
        decode_image(png(1, 1_000_000), 32)
    wide = png(5000, 60)  # resized first, it would be 2,667 x 32; cropped while resized, 32 x 32
    tracemalloc.start()
    out = decode_image(wide, 32)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert out.shape == (32, 32, 3) and int(out[..., 0].min()) >= 199 and peak < 2 * 5000 * 60 * 4


def test_zip_of_very_many_members_is_bounded_and_says_how_many_were_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zipfile

    from test_reliability import _iter

    from hood.data import readers

    good = (write_flat_folder(tmp_path / "f", count=1) / "img000.png").read_bytes()
    with zipfile.ZipFile(tmp_path / "many.zip", "w") as zf:
        for i in range(5):
            zf.writestr(f"{i}.png", good)
    monkeypatch.setattr(readers, "MAX_ARCHIVE_MEMBERS", 3)
    got = _iter([str(tmp_path / "many.zip")])
    assert [v for v in got.values()][:3] == [None, None, None] and len(got) == 4
    assert got[f"{tmp_path / 'many.zip'}/(after 3 images)"] == "2 more image members not scored: at most 3 are read from one archive; split it"


# ---- what the terminal shows -----------------------------------------------------------------------------------


def test_d37_control_characters_in_file_names_are_escaped_in_the_table(run_copy: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from hood.cli import options

    monkeypatch.setattr(options.stdout, "width", 400)  # one table row per file: names are not wrapped
    folder = write_flat_folder(tmp_path / "names", count=1)
    (folder / "img000.png").rename(folder / "esc\x1b[31mred\x1b[0m.png")
    (folder / "x.png").write_bytes(b"not an image")
    (folder / "x.png").rename(folder / "new\nline.png")
    r = score(run_copy, str(folder), "--method", "msp")
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.stdout and "esc\\x1b[31mred\\x1b[0m.png" in r.stdout
    assert "new\\nline.png" in r.stdout


def test_d38_exif_orientation_is_applied_before_scoring(tmp_path: Path) -> None:
    import io

    from PIL import Image

    from hood.data.images import decode_image

    arr = np.zeros((32, 64, 3), np.uint8)
    arr[:, :32] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: the white half on top
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif, quality=95)
    shown = decode_image(buf.getvalue(), 32)
    assert shown[:8].mean() > 200 and shown[-8:].mean() < 50


def test_d42_hidden_files_and_skipped_archive_members_are_listed_with_their_reason(tmp_path: Path) -> None:
    import io
    import tarfile

    from test_reliability import _iter

    folder = write_flat_folder(tmp_path / "set", count=1)
    (folder / ".hidden.png").write_bytes((folder / "img000.png").read_bytes())
    archive = tmp_path / "links.tar"
    good = (folder / "img000.png").read_bytes()
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("ok.png")
        info.size = len(good)
        tf.addfile(info, io.BytesIO(good))
        for name, kind in (("evil.png", tarfile.LNKTYPE), ("sym.png", tarfile.SYMTYPE), ("dev.png", tarfile.CHRTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, "/etc/passwd"
            tf.addfile(info)
    got = _iter([str(folder), str(archive)])
    assert got[f"{folder}/.hidden.png"] == "a hidden file (its name starts with '.'): not scored"
    assert got[f"{archive}/ok.png"] is None
    assert got[f"{archive}/evil.png"] == "a hard link in the archive, not a regular file: not read"
    assert got[f"{archive}/sym.png"] == "a symbolic link in the archive, not a regular file: not read"
    assert got[f"{archive}/dev.png"] == "a device, FIFO or other special file in the archive, not a regular file: not read"


def test_d24_the_decode_cache_follows_links_to_their_targets(tmp_path: Path) -> None:
    import os

    from hood.data.cache import source_key

    (tmp_path / "targets").mkdir()
    (tmp_path / "links").mkdir()
    target = tmp_path / "targets" / "d0.png"
    target.write_bytes(b"one")
    (tmp_path / "links" / "d0.png").symlink_to(target)
    before = source_key(tmp_path / "links", 32)
    target.write_bytes(b"other content")
    os.utime(target, ns=(10**18, 10**18))
    assert source_key(tmp_path / "links", 32) != before


class _Net(torch.nn.Module):
    """A user's model with BatchNorm, which behaves differently in training and in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.c, self.b, self.fc = torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.b(self.c(x))).mean((2, 3)))


def test_d25_nan_pixels_are_refused_not_scored_as_black() -> None:
    import hood

    det = hood.KNN(_Net(), k=2, device="cpu").fit(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8))
    x = torch.rand(2, 3, 32, 32)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="the images hold 1 NaN values"):
        det.predict(x)


def test_d26_fit_and_predict_leave_the_users_model_in_its_mode() -> None:
    import hood

    model = _Net().train()
    model.b.eval()  # a frozen BatchNorm inside a model being trained
    det = hood.KNN(model, k=2, device="cpu").fit(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8))
    det.predict(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    assert model.training and model.c.training and not model.b.training


def test_d41_an_unknown_device_name_is_one_valueerror() -> None:
    import hood

    with pytest.raises(ValueError, match="device 'gpu' is not available here"):
        hood.MSP(_Net(), device="gpu")


# ---- a tampered file is one ValueError naming it ----------------------------------------------------------


@pytest.fixture(scope="module")
def saved_detector(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A heatmap detector fitted for one epoch through the API on a small model, saved."""
    import hood

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 3)).eval()
    images = torch.randint(0, 256, (24, 3, 16, 16), dtype=torch.uint8)
    det = hood.HeatmapDetector(model, device="cpu").fit(images, images.flip(0), epochs=1, batch_size=8, progress=False)
    path = tmp_path_factory.mktemp("saved") / "det.pt"
    det.save(path)
    return {"path": path, "model": model, "images": images}


def _tampered(source: Path, target: Path, change: Any) -> Path:
    ckpt = torch.load(source, weights_only=False)
    change(ckpt)
    torch.save(ckpt, target)
    return target


def _set_api(key: str, value: Any) -> Any:
    return lambda ckpt: ckpt["meta"]["api"].__setitem__(key, value)


@pytest.mark.parametrize(("change", "words"), [
    (lambda ckpt: ckpt["meta"]["api"].pop("linear"), "linear not as HeatmapDetector.save writes"),
    (lambda ckpt: ckpt.__setitem__("meta", [1, 2]), "its saved settings not as"),
    (_set_api("fw_layers", "abc"), "fw_layers not as"),
    (_set_api("mean", "abc"), "mean not as"),
    (_set_api("image_size", -3), "image_size not as"),
    (lambda ckpt: next(v for v in ckpt["state_dict"].values() if v.is_floating_point()).fill_(float("nan")),
     "its weights hold NaN or infinite values"),
    (lambda ckpt: next(v for v in ckpt["state_dict"].values() if v.is_floating_point()).view(-1)[0].add_(1e-3),
     "its weights are not those it was saved with"),
])
def test_d39_a_tampered_saved_detector_is_one_valueerror_naming_the_file(saved_detector: dict[str, Any], tmp_path: Path,
                                                                       change: Any, words: str) -> None:
    import hood

    path = _tampered(saved_detector["path"], tmp_path / "tampered.pt", change)
    with pytest.raises(ValueError, match="tampered.pt") as err:
        hood.HeatmapDetector.load(path, saved_detector["model"], device="cpu")
    assert words in str(err.value) and "\n" not in str(err.value)
    assert type(err.value) is ValueError  # not a KeyError / AttributeError from inside load
    ok = hood.HeatmapDetector.load(saved_detector["path"], saved_detector["model"], device="cpu")
    assert np.isfinite(ok.predict(saved_detector["images"][:2])).all()  # the untouched file loads as before


def test_d39_a_tampered_fit_or_decoder_in_a_run_is_one_line_naming_the_file(run_copy: Path, mine: Path) -> None:
    import hood

    fit = run_copy / "fits" / "knn.pt"
    _tampered(fit, fit, lambda ckpt: ckpt["state"].__setitem__("bank", torch.zeros(4, 7)))  # the wrong shape
    one_line_error(score(run_copy, str(mine), "--method", "knn"), 2, f"fit {fit} is damaged", f"hood evaluate --run {run_copy}")
    with pytest.raises(ValueError, match="knn.pt is damaged"):
        hood.load_run(run_copy, method="knn", device="cpu")
    decoder = run_copy / "decoder.pt"
    _tampered(decoder, decoder, lambda ckpt: next(iter(ckpt["state_dict"].values())).fill_(float("nan")))
    one_line_error(score(run_copy, str(mine), "--method", "heatmap"), 2, f"decoder {decoder} is damaged", "NaN")


# ---- parameters the data cannot serve are one ValueError naming them ---------------------------------------


def _arrays(n: int = 64, width: int = 8, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, width, generator=g).numpy(), torch.randn(n, classes, generator=g).numpy()


def test_d41_knn_with_more_neighbours_than_fit_rows_is_refused() -> None:
    import hood

    with pytest.raises(ValueError, match=r"^k is 1000000, more than the 64 ID training rows it is fitted on; choose k of at most 64$"):
        hood.KNN(k=10**6).fit(_arrays())


def test_d41_knn_k_above_the_fit_rows_is_refused_before_evaluate_starts(run_copy: Path) -> None:
    before = (run_copy / "results.json").read_bytes()
    one_line_error(_evaluate(run_copy, "uniform-noise", "--methods", "knn", "--set", "evaluate.params.knn.k=100000"), 2,
                   "evaluate.params.knn.k: k is 100000, more than the 36 ID training rows")
    assert (run_copy / "results.json").read_bytes() == before  # the earlier evaluation's thresholds still hold


@pytest.mark.parametrize("label", [99, -1, 3])
def test_d41_mahalanobis_labels_out_of_range_are_refused(label: int) -> None:
    import hood

    labels = np.zeros(64, dtype=np.int64)
    labels[5] = label
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 2\] \(the model has 3 logits\)"):
        hood.Mahalanobis().fit(_arrays(), labels=labels)


def test_d41_vim_on_features_of_another_width_than_its_final_layer_is_refused() -> None:
    import hood

    vim = hood.ViM(torch.nn.Linear(8, 3), dim=6)
    with pytest.raises(ValueError, match="ViM reads the features the model's final layer takes, 8 wide; these are 5 wide"):
        vim.fit(_arrays(width=5))
    vim.fit(_arrays())
    with pytest.raises(ValueError, match="these are 5 wide"):
        vim.predict(_arrays(width=5))


# ---- a second evaluation keeps the first one's table; a training key is not silently ignored -----------------


def test_a_second_evaluate_keeps_the_first_table_and_says_so(pipeline: dict[str, Any], run_copy: Path) -> None:
    from hood.jobs.evaluate import evaluate

    first = json.loads((run_copy / "results.json").read_text())
    again = evaluate(tiny_config(pipeline["root"], **{"evaluate.methods": ["msp"], "evaluate.fpr_convention": "ood"}),
                     str(run_copy)).results
    kept = run_copy / again["earlier_table"]
    assert kept.parent.name == "earlier-results" and json.loads(kept.read_text()) == first
    assert kept.with_suffix(".csv").read_text() == (run_copy / "results.csv").read_text() or kept.with_suffix(".csv").is_file()
    assert any(f"that one is kept in {kept}" in n for n in again["notes"])
    third = evaluate(tiny_config(pipeline["root"], **{"evaluate.methods": ["msp"]}), str(run_copy)).results
    assert third["earlier_table"] != again["earlier_table"]  # each earlier table a file of its own
    assert json.loads((run_copy / third["earlier_table"]).read_text())["fpr_convention"] == "ood"


@pytest.mark.parametrize(("key", "trainer"), [("decoder.noise_floor_quantile=0", "train-decoder"),
                                              ("pretrain.epochs=3", "pretrain")])
def test_a_training_key_given_to_evaluate_or_score_is_one_line_not_ignored(run_copy: Path, mine: Path, key: str,
                                                                           trainer: str) -> None:
    before = (run_copy / "results.json").read_bytes()
    words = f"--set {key.split('=')[0]} is a {trainer} setting"
    one_line_error(_evaluate(run_copy, "uniform-noise", "--set", key), 2, words, f"`hood {trainer}`")
    one_line_error(score(run_copy, str(mine), "--set", key), 2, words)
    assert (run_copy / "results.json").read_bytes() == before


# ---- a detector that scores every image the same is named, not shown as a measurement -----------------------


def test_a_constant_detector_is_named_under_evaluates_table_and_in_score(pipeline: dict[str, Any], run_copy: Path,
                                                                        mine: Path) -> None:
    # what a decoder trained for two epochs with a floor of 1.000 draws: the same (blank) heatmap on every image
    _new_decoder(run_copy, lambda state: state["noise_floor"].fill_(1.0))
    r = _evaluate(run_copy, "uniform-noise", "--methods", "heatmap,heatmap+vim,msp")
    assert r.exit_code == 0, r.output
    said = " ".join(r.stdout.split())
    assert "note: heatmap scores every image of id and uniform-noise the same (0): it tells none of them apart" in said
    assert "train it longer (more decoder.epochs)" in said
    assert "note: heatmap+vim: its heatmap part scores every ID test image the same, so it ranks images as vim alone" in said
    assert "msp scores" not in said
    res = json.loads((run_copy / "results.json").read_text())
    assert res["constant"] == {"heatmap": ["id", "uniform-noise"]}
    out = score(run_copy, str(mine), "--method", "heatmap")
    assert out.exit_code == 0, out.output
    assert "note: heatmap scored every image of id and uniform-noise the same when the run was evaluated" in " ".join(out.stderr.split())
    combined = score(run_copy, str(mine), "--method", "heatmap+vim", "--json")
    assert any("its heatmap part scored every ID test image the same" in n for n in json.loads(combined.stdout)["notes"])
    assert not any("the same" in n for n in json.loads(score(run_copy, str(mine), "--method", "msp", "--json").stdout)["notes"])
    from hood.jobs.visualize import visualize

    figs = visualize(tiny_config(pipeline["root"], **{"data.ood": ["uniform-noise"]}), str(run_copy), n=2,
                     out_dir=str(run_copy / "figs"))
    assert any(n.startswith("heatmap scores every image of id and uniform-noise the same") for n in figs.notes)


def test_a_decoder_trained_too_briefly_is_named_beside_the_heatmap_figures(pipeline: dict[str, Any], run_copy: Path,
                                                                          mine: Path) -> None:
    """What run.json records after `train-decoder --epochs 2`: pixels stuck on every ID image, a floor not applied."""
    from hood.jobs.evaluate import evaluate

    info = json.loads((run_copy / "run.json").read_text())
    info["stuck_pixels"] = {"pixels": 599, "of": 1024, "images": 500}
    info["noise_floor"] = {"quantile": 0.99, "value": 0.0, "measured": 1.0, "refused": "the noise floor measured 1.000 would erase every heatmap"}
    (run_copy / "run.json").write_text(json.dumps(info))
    notes = evaluate(tiny_config(pipeline["root"], **{"evaluate.methods": ["heatmap", "msp"]}), str(run_copy)).results["notes"]
    assert any("599 of 1024 heatmap pixels stuck" in n and "more decoder.epochs" in n for n in notes)
    assert any(n.startswith("the decoder keeps no noise floor: the noise floor measured 1.000") for n in notes)
    said = json.loads(score(run_copy, str(mine), "--method", "heatmap", "--json").stdout)["notes"]
    assert any("599 of 1024" in n for n in said)
    assert json.loads(score(run_copy, str(mine), "--method", "msp", "--json").stdout)["notes"] == []  # it reads no decoder


def test_a_second_validation_keeps_the_first_validation_table(pipeline: dict[str, Any], run_copy: Path) -> None:
    from hood.jobs.evaluate import evaluate

    cfg = {"evaluate.methods": ["msp"], "evaluate.validation": True, "data.val_id_source": "test", "data.ood": ["uniform-noise"]}
    evaluate(tiny_config(pipeline["root"], **cfg), str(run_copy))
    first = json.loads((run_copy / "validation.json").read_text())
    again = evaluate(tiny_config(pipeline["root"], **{**cfg, "evaluate.fpr_convention": "ood"}), str(run_copy)).results
    assert again["earlier_table"].startswith("earlier-results/validation-")
    assert json.loads((run_copy / again["earlier_table"]).read_text()) == first


@pytest.mark.parametrize("meta", [None, [1, 2], {"id_dataset": "x", "id_rows": "abc"}])
def test_d39_a_decoder_whose_record_was_edited_is_one_line(pipeline: dict[str, Any], run_copy: Path, meta: Any) -> None:
    decoder = run_copy / "decoder.pt"
    _tampered(decoder, decoder, lambda ckpt: ckpt.pop("meta") if meta is None else ckpt.__setitem__("meta", meta))
    r = _evaluate(run_copy, "uniform-noise", "--methods", "heatmap")
    if meta is None:  # a decoder without a record (an older file) is evaluated as one that held out nothing
        assert r.exit_code == 0, r.output
    else:
        one_line_error(r, 2, f"decoder {decoder} is damaged: its record of what it was trained on")

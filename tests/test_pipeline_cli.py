"""One end-to-end run of the CLI through Typer's test runner: pretrain -> train-decoder -> evaluate on a
tiny synthetic ID archive, plus the CLI's contract (--version, help, --json, one-line known errors)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from conftest import save_random_classifier
from typer.testing import CliRunner

from hood.cli.app import app
from hood.version import __version__

METRICS = ("fpr95", "auroc", "aupr_in", "aupr_out")
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, *needles: str) -> str:
    assert result.exit_code not in (0, None), result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), repr(result.exception)
    err = result.stderr.strip()
    assert "Traceback" not in result.output
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


def test_pretrain_train_decoder_evaluate(id_archive: Path, ood_folder: Path, tmp_path: Path) -> None:
    # 36 ID training images: KNN's k at most that many (its default, 50, is refused here)
    common = ("--dataset", str(id_archive), "--set", "model.arch=wrn10_2", "--set", "evaluate.params.knn.k=5", "--device", "cpu", "--quiet")

    r = invoke("pretrain", *common, "--epochs", "1", "--batch-size", "12", "--out", "runs/clf", "--json")
    assert r.exit_code == 0, r.output
    pre = json.loads(r.stdout)
    clf = Path("runs/clf/classifier.pt")
    assert clf.is_file() and Path(pre["run"]).resolve() == Path("runs/clf").resolve()
    assert 0.0 <= pre["test_acc"] <= 1.0
    # the wall time of each epoch is recorded beside (not inside) the reproducible history
    pre_info = json.loads(Path("runs/clf/run.json").read_text())
    assert len(pre_info["epoch_seconds"]) == 1 and pre_info["epoch_seconds"][0] > 0
    assert all("seconds" not in h for h in pre_info["history"])

    r = invoke(
        "train-decoder", *common, "--classifier", str(clf), "--set", f"data.aux={ood_folder}",
        "--num-ood", "8", "--epochs", "1", "--batch-size", "8", "--out", "runs/dec", "--json",
    )
    assert r.exit_code == 0, r.output
    dec = json.loads(r.stdout)
    assert Path(dec["decoder"]).is_file() and len(dec["losses"]) == 1
    info = json.loads(Path("runs/dec/run.json").read_text())
    assert info["status"] == "complete" and info["command"] == "train-decoder"
    assert len(info["epoch_seconds"]) == 1 and info["epoch_seconds"][0] > 0
    assert list(info["phase_seconds"]) == ["data", "features", "prototypes", "train"]
    assert all(v >= 0 for v in info["phase_seconds"].values())

    r = invoke("evaluate", *common, "--run", "runs/dec", "--ood", f"{ood_folder},uniform-noise", "--set", "data.ood_count=5", "--json")
    assert r.exit_code == 0, r.output
    printed = json.loads(r.stdout)
    found = sorted(Path("runs").rglob("results.json"))
    assert len(found) == 1, found
    results = json.loads(found[0].read_text())
    assert printed["results"] == results["results"]
    assert results["id_dataset"] == str(id_archive) and results["n_id"] == 12
    assert Path(results["classifier"]).resolve() == clf.resolve()
    assert "heatmap" in results["results"]
    for method, per_set in results["results"].items():
        assert set(per_set) == {"tiny-ood", "uniform-noise", "mean"}, method
        for name, m in per_set.items():
            assert set(METRICS) | {"n"} <= set(m), (method, name)
            assert all(0.0 <= m[k] <= 1.0 for k in METRICS), (method, name, m)
        assert per_set["tiny-ood"]["n"] == per_set["uniform-noise"]["n"] == 5
        for k in METRICS:
            assert abs(per_set["mean"][k] - (per_set["tiny-ood"][k] + per_set["uniform-noise"][k]) / 2) < 1e-9
    rows = list(csv.reader(found[0].with_name("results.csv").open()))
    assert len(rows) > 1 and any("heatmap" in row and "uniform-noise" in row for row in rows[1:])

    # the human-readable table on stdout; the protocol's default count (len(ID test) / 5); OpenOOD's FPR95
    r = invoke("evaluate", *common, "--run", "runs/dec", "--ood", "uniform-noise", "--fpr-convention", "ood")
    assert r.exit_code == 0, r.output
    assert "FPR95" in r.stdout and "uniform-noise" in r.stdout and "AUROC" in r.stdout and "OpenOOD" in r.stdout
    results = json.loads(max(Path("runs").rglob("results.json"), key=lambda p: p.stat().st_mtime_ns).read_text())
    assert results["fpr_convention"] == "ood"
    assert results["results"]["heatmap"]["uniform-noise"]["n"] == 12 // 5

    # a decoder evaluated with another classifier: one line naming the mismatch
    other = save_random_classifier(tmp_path / "other.pt", seed=5)
    r = invoke("evaluate", *common, "--run", "runs/dec", "--classifier", str(other), "--ood", "uniform-noise")
    assert_one_line_error(r, "fingerprint")


def test_version_and_help() -> None:
    r = invoke("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"hood {__version__}"
    r = invoke()
    assert "Usage" in r.output
    for cmd in ("pretrain", "train-decoder", "evaluate", "visualize", "download"):
        assert cmd in r.output
    assert r.exit_code in (0, 2)
    r = invoke("evaluate", "--help")
    assert r.exit_code == 0 and "--ood" in r.stdout and "--json" in r.stdout


def test_missing_data_set_is_one_line_naming_hood_download() -> None:
    r = invoke("pretrain", "--dataset", "cifar10", "--set", "model.arch=wrn10_2", "--device", "cpu", "--quiet")
    assert_one_line_error(r, "cifar10", "hood download")


def test_bad_config_value_is_one_line() -> None:
    r = invoke("pretrain", "--dataset", "demo-digits", "--set", "decoder.fw_layers=9", "--quiet")
    assert_one_line_error(r, "decoder.fw_layers")
    r = invoke("train-decoder", "--set", "decoder.num_odd=3", "--quiet")
    assert_one_line_error(r, "did you mean 'num_ood'")


def test_python_m_hood_version() -> None:
    out = subprocess.run([sys.executable, "-m", "hood", "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"hood {__version__}"


def test_cuda_asked_for_but_absent_is_one_line() -> None:
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    r = invoke("pretrain", "--dataset", "demo-digits", "--set", "model.arch=wrn10_2", "--device", "cuda", "--quiet")
    assert_one_line_error(r, "CUDA")


def test_hood_debug_keeps_the_traceback(monkeypatch) -> None:
    from hood.errors import DatasetMissingError

    monkeypatch.setenv("HOOD_DEBUG", "1")
    r = invoke("pretrain", "--dataset", "cifar10", "--set", "model.arch=wrn10_2", "--device", "cpu", "--quiet")
    assert r.exit_code != 0 and isinstance(r.exception, DatasetMissingError)


def test_missing_data_leaves_no_run_directory(tmp_path: Path) -> None:
    """The data check runs before the run directory is made: no stray 'running' run is left behind."""
    r = invoke("pretrain", "--dataset", "cifar10", "--arch", "wrn10_2", "--device", "cpu", "--quiet")
    assert_one_line_error(r, "hood download cifar10")
    r = invoke("train-decoder", "--dataset", str(tmp_path / "nowhere"), "--set", "model.arch=wrn10_2",
               "--classifier", str(save_random_classifier(tmp_path / "c.pt", "wrn10_2", 3)), "--device", "cpu", "--quiet")
    assert_one_line_error(r, "does not exist")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_runs_without_config_are_named_after_dataset_and_arch(id_archive: Path) -> None:
    """pretrain, train-decoder and evaluate given the same --dataset/--arch share one run name, so the
    later commands find the earlier ones' runs without --config."""
    from hood.cli.options import build_config

    a = build_config(None, {"data.id": str(id_archive), "model.arch": "wrn10_2"}, None)
    b = build_config(None, {"data.id": str(id_archive)}, ["model.arch=wrn10_2"])
    assert a.name == b.name == "tiny-id_wrn10_2"
    assert build_config("demo", {}, None).name == "demo"

"""``hood evaluate`` with every method: results.json / results.csv contents, saved scores, cached fits,
and the Rich table, on the tiny decoder run of ``conftest.tiny_run``."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import tiny_config
from rich.console import Console, Group
from typer.testing import CliRunner

from hood.jobs.evaluate import evaluate
from hood.metrics import ood_metrics

METHODS = ["heatmap", "heatmap+vim", "heatmap+vim+scale", "msp", "energy", "maxlogit", "odin", "gen", "mahalanobis", "knn", "react", "vim", "ash", "scale", "fdbd", "nac", "nci", "rmds", "adascale"]


@pytest.fixture(autouse=True)
def _restore_threads():  # noqa: ANN202 - the jobs set torch's thread count (run.num_threads=1: 2 shared cores)
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_results_json_has_one_entry_per_method_and_the_convention(pipeline: dict[str, Any]) -> None:
    res = json.loads((pipeline["run"] / "results.json").read_text())
    assert res == pipeline["results"]
    assert {"id_dataset", "classifier", "n_id", "results", "fpr_convention", "caption", "thresholds"} <= set(res)
    assert res["n_id"] == 12 and res["fpr_convention"] == "id" and "ID positive" in res["caption"]
    assert list(res["results"]) == METHODS == res["methods"] == list(res["thresholds"])
    for per_set in res["results"].values():
        assert list(per_set) == ["ood", "uniform-noise", "mean"]
        for m in per_set.values():
            assert set(m) == {"fpr95", "auroc", "aupr_in", "aupr_out", "n"}
            assert all(0.0 <= m[k] <= 1.0 for k in ("fpr95", "auroc", "aupr_in", "aupr_out"))
        assert per_set["ood"]["n"] == 12 and per_set["mean"]["n"] == 24
        assert per_set["mean"]["auroc"] == pytest.approx((per_set["ood"]["auroc"] + per_set["uniform-noise"]["auroc"]) / 2)


def test_saved_scores_reproduce_the_metrics_and_thresholds(pipeline: dict[str, Any]) -> None:
    res, run = pipeline["results"], pipeline["run"]
    for method in METHODS:
        ids = np.load(run / "scores" / method / "id.npz")["scores"]
        ood = np.load(run / "scores" / method / "ood.npz")["scores"]
        assert ids.dtype == np.float64 and len(ids) == 12 and len(ood) == 12
        again = ood_metrics(ids, ood, "id")
        assert again == pytest.approx({k: v for k, v in res["results"][method]["ood"].items() if k != "n"})
        assert np.mean(ids <= res["thresholds"][method]) >= 0.95


def test_results_csv_is_tidy(pipeline: dict[str, Any]) -> None:
    rows = list(csv.reader(io.StringIO((pipeline["run"] / "results.csv").read_text())))
    assert rows[0] == ["method", "set", "metric", "value"]
    assert len(rows) - 1 == len(METHODS) * 3 * 5
    knn_auroc = [r for r in rows if r[:3] == ["knn", "mean", "auroc"]]
    assert float(knn_auroc[0][3]) == pytest.approx(pipeline["results"]["results"]["knn"]["mean"]["auroc"])


def test_fits_are_cached_in_the_run_and_refitted_when_parameters_change(pipeline: dict[str, Any], tmp_path: Path, monkeypatch) -> None:
    import shutil

    import hood.jobs.evaluate as ev

    root = pipeline["root"]
    run = Path(shutil.copytree(pipeline["run"], tmp_path / "copy"))  # the shared run stays as the other tests expect
    assert sorted(p.stem for p in (run / "fits").glob("*.pt")) == ["adascale", "fdbd", "heatmap+vim", "heatmap+vim+scale", "knn", "mahalanobis", "nac", "nci", "react", "rmds", "vim"]
    calls: list[str] = []
    real = ev.extract_features
    monkeypatch.setattr(ev, "extract_features", lambda *a, **k: calls.append(a[7] if len(a) > 7 else k.get("description")) or real(*a, **k))
    monkeypatch.setenv("HOOD_CACHE", str(root / "_cache"))
    again = evaluate(tiny_config(root, **{"evaluate.methods": ["knn", "vim"]}), str(run))
    assert "ID train features" not in calls  # both fits came from the cache
    assert again.results["results"]["knn"] == pipeline["results"]["results"]["knn"]
    from hood.detectors.adascale import AdaSCALE
    from hood.detectors.nac import NAC

    with monkeypatch.context() as m:  # the detectors that fit on images load their fits too
        for cls in (NAC, AdaSCALE):
            m.setattr(cls, "fit_on_images", lambda *a, c=cls: pytest.fail(f"{c.name} refitted"))
        cached = evaluate(tiny_config(root, **{"evaluate.methods": ["nac", "adascale"]}), str(run))
    for method in ("nac", "adascale"):
        assert cached.results["results"][method] == pipeline["results"]["results"][method]
    before = np.load(run / "scores" / "knn" / "id.npz")["scores"]
    calls.clear()
    evaluate(tiny_config(root, **{"evaluate.methods": ["knn"], "evaluate.params.knn.k": 2}), str(run))
    assert "ID train features" not in calls  # refitted on the features the decoder run kept of all 36 rows
    assert torch.load(run / "fits" / "knn.pt", weights_only=True)["key"]["settings"] == {"k": 2}
    assert np.load(run / "scores" / "knn" / "id.npz")["scores"] != pytest.approx(before)


def test_one_evaluation_runs_the_decoder_once_per_image_and_scores_as_methods_alone(pipeline: dict[str, Any], tmp_path: Path, monkeypatch) -> None:
    """The heatmap and ViM are shared between the methods that read them: with the fits to redo, ``heatmap``,
    ``heatmap+vim`` and ``vim`` together run the decoder over the fit rows once and over each scored set once,
    and every method's scores are the ones it gets evaluated alone."""
    import shutil

    from hood.detectors.heatmap import HeatmapDetector

    root = pipeline["root"]
    run = Path(shutil.copytree(pipeline["run"], tmp_path / "copy"))
    shutil.rmtree(run / "fits")
    monkeypatch.setenv("HOOD_CACHE", str(root / "_cache"))
    rows: list[int] = []
    real = HeatmapDetector.score_features
    monkeypatch.setattr(HeatmapDetector, "score_features", lambda self, feats: rows.append(len(feats)) or real(self, feats))
    methods = ["heatmap", "heatmap+vim", "vim"]
    together = evaluate(tiny_config(root, **{"evaluate.methods": methods}), str(run))
    assert sorted(rows) == [12, 12, 12, 36]  # ID test, the two OOD sets, the 36 fit rows
    for m in methods:
        shutil.rmtree(run / "fits", ignore_errors=True)  # each alone fits afresh (heatmap keeps no fit)
        alone = evaluate(tiny_config(root, **{"evaluate.methods": [m]}), str(run))
        assert alone.results["results"][m] == together.results["results"][m]
        assert alone.results["thresholds"][m] == together.results["thresholds"][m]
        assert together.results["results"][m] == pipeline["results"]["results"][m]  # and as in --methods all


def _text(renderable: Any, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def test_table_groups_methods_bolds_the_best_and_names_the_convention() -> None:
    from hood.cli.render import results_table

    def m(fpr: float, auroc: float) -> dict[str, float]:
        return {"fpr95": fpr, "auroc": auroc, "aupr_in": auroc, "aupr_out": auroc, "n": 10}

    res = {
        "id_dataset": "tiny", "n_id": 50, "id_test_accuracy": 0.9, "fpr_convention": "ood", "caption": "FPR95: OpenOOD's",
        "results": {
            "heatmap": {"a": m(0.10, 0.95), "b": m(0.50, 0.70), "mean": m(0.30, 0.825)},
            "msp": {"a": m(0.40, 0.80), "b": m(0.20, 0.90), "mean": m(0.30, 0.85)},
        },
    }
    table = results_table(res, width=200)
    cells = {c.header: list(c._cells) for c in table.columns}
    assert cells["heatmap\nFPR95↓"] == ["[bold]10.0[/]", "50.0", "[bold]30.0[/]"]
    assert cells["msp\nAUROC↑"] == ["80.0", "[bold]90.0[/]", "[bold]85.0[/]"]
    text = _text(table, 200)
    assert "--fpr-convention ood" in text and "mean" in text
    narrow = results_table({**res, "results": {f"method{i}": res["results"]["msp"] for i in range(6)}}, width=80)
    assert isinstance(narrow, Group)
    text = _text(narrow, 80)
    assert all(f"method{i}" in text for i in range(6)) and max(len(line) for line in text.splitlines()) <= 80


def test_cli_evaluate_baselines_without_a_decoder(pipeline: dict[str, Any], monkeypatch) -> None:
    from hood.cli.app import app

    root = pipeline["root"]
    monkeypatch.setenv("HOOD_CACHE", str(root / "_cache"))
    args = ["evaluate", "--methods", "msp,energy,knn", "--classifier", str(root / "classifier.pt"), "-d", str(root / "id"),
            "--ood", str(root / "ood"), "--ood-count", "12", "--device", "cpu", "--fpr-convention", "ood", "--json", "-q",
            "--set", "model.arch=wrn10_2", "--set", "evaluate.params.knn.k=3", "--set", "run.num_threads=1"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout)
    assert list(res["results"]) == ["msp", "energy", "knn"] and res["fpr_convention"] == "ood"
    runs = [p for p in Path("runs").iterdir() if "evaluate" in p.name]
    assert len(runs) == 1 and json.loads((runs[0] / "run.json").read_text())["status"] == "complete"
    assert (runs[0] / "fits" / "knn.pt").is_file() and (runs[0] / "scores" / "msp" / "ood.npz").is_file()
    bad = CliRunner().invoke(app, [*args[:2], "msp,nope", *args[3:]])
    assert bad.exit_code == 2 and "unknown method 'nope'" in bad.output
    assert os.environ["HOOD_CACHE"] == str(root / "_cache")

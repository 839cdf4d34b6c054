"""A stored threshold is used only beside the decoder, classifier, ID set and image size it was measured on;
data sets' names stay apart from a run's own files; runs open from any directory; the Python API keeps its
word; bad input is one line; and what the terminal shows is what is on disk.

Each test names the case it covers (docs/reliability.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_flat_folder
from test_evaluate_table import tiny_config, tiny_run
from test_reliability import invoke, one_line_error, score

from hood.errors import HoodError


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return tiny_run(tmp_path_factory)


@pytest.fixture
def run_copy(pipeline: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the evaluated tiny run, for tests that rewrite it."""
    monkeypatch.setenv("HOOD_CACHE", str(pipeline["root"] / "_cache"))
    return Path(shutil.copytree(pipeline["run"], tmp_path / "run"))


@pytest.fixture
def mine(tmp_path: Path) -> Path:
    return write_flat_folder(tmp_path / "mine", count=2)


def _retrain_decoder(run: Path) -> None:
    """What `train-decoder --resume R` leaves: another decoder.pt under the same results.json."""
    ckpt = torch.load(run / "decoder.pt", weights_only=False)
    for v in ckpt["state_dict"].values():
        if v.is_floating_point():
            v.add_(0.05)
    torch.save(ckpt, run / "decoder.pt")


# ---- thresholds tied to what they were measured on --------------------------------------------------------


def test_d18_resumed_decoder_refuses_old_thresholds(pipeline: dict[str, Any], run_copy: Path, mine: Path, tmp_path: Path) -> None:
    import hood
    from hood.jobs.visualize import visualize

    _retrain_decoder(run_copy)
    one_line_error(score(run_copy, str(mine)), 2, "heatmap threshold", "was set with decoder", f"hood evaluate --run {run_copy}")
    one_line_error(score(run_copy, str(mine), "--method", "heatmap+vim"), 2, "decoder")
    assert score(run_copy, str(mine), "--method", "msp").exit_code == 0  # a baseline does not read the decoder
    with pytest.raises(ValueError, match="was set with decoder"):
        hood.load_run(run_copy, device="cpu")
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


def test_d21_evaluate_at_another_image_size_than_the_decoder_is_refused(pipeline: dict[str, Any], run_copy: Path) -> None:
    from hood.jobs.evaluate import evaluate

    before = (run_copy / "results.json").read_bytes()
    cfg = tiny_config(pipeline["root"], **{"evaluate.methods": ["heatmap"], "data.image_size": 64})
    with pytest.raises(HoodError, match="draws 32x32 heatmaps"):
        evaluate(cfg, str(run_copy))
    assert (run_copy / "results.json").read_bytes() == before


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

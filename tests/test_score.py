"""``hood score`` on a user's folder: verdicts at the stored threshold, heatmaps, JSON, and one corrupt
file that is listed rather than fatal."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from conftest import write_flat_folder
from PIL import Image
from typer.testing import CliRunner

from hood.viz import COLOUR_BAR_WIDTH


@pytest.fixture
def mine(tmp_path: Path) -> Path:
    folder = write_flat_folder(tmp_path / "mine", count=3, size=48)  # not the run's size: resized on the way in
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (folder / "notes.txt").write_text("not an image at all: skipped by extension")
    return folder


def _score(args: list[str], pipeline: dict[str, Any], monkeypatch) -> Any:
    from hood.cli.app import app

    monkeypatch.setenv("HOOD_CACHE", str(pipeline["root"] / "_cache"))
    return CliRunner().invoke(app, ["score", *args, "--run", str(pipeline["run"]), "--device", "cpu", "-q", "--set", "run.num_threads=1"])


def test_score_folder_with_a_corrupt_file(pipeline: dict[str, Any], mine: Path, tmp_path: Path, monkeypatch) -> None:
    out = _score([str(mine), "--method", "heatmap", "--json", "--heatmaps", str(tmp_path / "hm")], pipeline, monkeypatch)
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout)
    threshold = pipeline["results"]["thresholds"]["heatmap"]
    assert res["method"] == "heatmap" and res["threshold"] == pytest.approx(threshold)
    files = {Path(i["file"]).name: i for i in res["images"]}
    assert sorted(files) == ["broken.jpg", "img000.png", "img001.png", "img002.png"]
    broken = files.pop("broken.jpg")
    assert broken["verdict"] == "unreadable" and broken["score"] is None and "not a readable image" in broken["error"]
    for item in files.values():
        assert item["predicted_class"] in ("class0", "class1", "class2")
        assert item["verdict"] == ("out" if item["score"] > threshold else "in")
        overlay = Image.open(item["heatmap"])
        assert overlay.format == "PNG" and overlay.size == (128 + COLOUR_BAR_WIDTH, 128)
    assert "1 of 4 file(s) could not be read" in out.stderr


def test_score_table_archive_threshold_and_baseline(pipeline: dict[str, Any], mine: Path, tmp_path: Path, monkeypatch) -> None:
    archive = tmp_path / "mine.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(mine, arcname="mine")
    out = _score([str(archive), str(tmp_path / "missing.png"), "--threshold", "-1e9"], pipeline, monkeypatch)
    assert out.exit_code == 0, out.output
    assert out.stdout.count("\tout") == 3 and "unreadable" in out.stdout and "no such file" in out.stdout
    knn = _score([str(mine), "--method", "knn", "--json"], pipeline, monkeypatch)
    assert knn.exit_code == 0, knn.output
    assert json.loads(knn.stdout)["threshold"] == pytest.approx(pipeline["results"]["thresholds"]["knn"])
    nothing = _score([str(mine / "broken.jpg")], pipeline, monkeypatch)
    assert nothing.exit_code == 1 and "unreadable" in nothing.stdout


def test_score_refuses_a_threshold_set_under_other_scoring_settings(pipeline: dict[str, Any], mine: Path, monkeypatch) -> None:
    """ViM's weight changes every heatmap+vim score, so the stored threshold no longer keeps 95% of ID:
    scoring under another weight is one line naming both and the fix, not silently wrong verdicts."""
    assert pipeline["results"]["threshold_settings"]["heatmap+vim"].items() >= {"vim_weight": 1.0}.items()
    same = _score([str(mine), "--method", "heatmap+vim", "--json"], pipeline, monkeypatch)
    assert same.exit_code == 0, same.output
    assert json.loads(same.stdout)["threshold"] == pytest.approx(pipeline["results"]["thresholds"]["heatmap+vim"])
    other = _score([str(mine), "--method", "heatmap+vim", "--set", "evaluate.params.heatmap+vim.vim_weight=3"], pipeline, monkeypatch)
    assert other.exit_code != 0 and "Traceback" not in other.output
    assert "was set with vim_weight 1.0" in other.output and "uses vim_weight 3.0" in other.output
    assert "pass --threshold" in other.output
    given = _score([str(mine), "--method", "heatmap+vim", "--set", "evaluate.params.heatmap+vim.vim_weight=3", "--threshold", "5"], pipeline, monkeypatch)
    assert given.exit_code == 0, given.output  # an explicit threshold is the user's to choose


def test_score_refuses_a_run_of_another_format_naming_the_hood_that_wrote_it(pipeline: dict[str, Any], mine: Path, tmp_path: Path,
                                                                             monkeypatch) -> None:
    """A run directory records its format; a run another hood wrote is one line saying which, never half-read."""
    import shutil

    run = Path(shutil.copytree(pipeline["run"], tmp_path / "old"))
    info = json.loads((run / "run.json").read_text())
    info["format"], info["environment"]["hood"] = 1, "0.1.0"
    (run / "run.json").write_text(json.dumps(info))
    out = _score([str(mine), "--method", "heatmap+vim", "--json"], {**pipeline, "run": run}, monkeypatch)
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert "was written by hood 0.1.0 (run format 1); this hood" in out.stderr and "reads run format 2" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1

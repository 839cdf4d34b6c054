"""Predictions are shown by class name: the checkpoint's names, else the ID set's (a checkpoint saved by other
code holds none), else the indices."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from test_checkpoint import authors_file
from typer.testing import CliRunner

from hood.config import resolve
from hood.jobs.classes import class_names, names_to_record
from hood.runs import Run


def test_the_checkpoint_names_win_then_the_run_then_indices() -> None:
    run = Run(Path("."), {"classes": ["cat", "dog"]})
    assert class_names(["a", "b"], 2, run) == ["a", "b"]
    assert class_names(None, 2, run) == ["cat", "dog"]
    assert class_names(None, 3, run) == ["0", "1", "2"]  # recorded for another class count: not used
    assert class_names(None, 2, Run(Path("."), {})) == ["0", "1"]
    assert names_to_record(None, ["cat", "dog"], 2) == ["cat", "dog"]
    assert names_to_record(None, ["cat", "dog", "eel"], 2) is None


def test_a_checkpoint_without_names_gets_the_id_sets_names(id_folder: Path, ood_folder: Path, tmp_path: Path) -> None:
    import hood
    from hood.jobs.train_decoder import train_decoder
    from hood.models.registry import build_classifier
    from hood.runs import create_run

    torch.manual_seed(0)
    clf = authors_file(build_classifier("wrn10_2", 3).eval(), tmp_path / "authors.pt")
    assert "classes" not in torch.load(clf, weights_only=True)
    cfg = resolve(None, {"data.id": str(id_folder), "data.aux": str(ood_folder), "model.arch": "wrn10_2", "model.classifier": str(clf),
                         "decoder.epochs": 1, "decoder.batch_size": 8, "decoder.num_ood": 8, "run.device": "cpu",
                         "run.num_threads": 1, "run.out": str(tmp_path / "dec")}, None)
    run = train_decoder(cfg, None, create_run(cfg, "train-decoder"))
    assert run.info["classes"] == ["class0", "class1", "class2"]
    assert hood.load_run(run.path, device="cpu").classes == ["class0", "class1", "class2"]
    from hood.cli.app import app

    out = CliRunner().invoke(app, ["score", str(id_folder / "test" / "class1"), "--run", str(run.path), "--json", "-q"])
    assert out.exit_code == 0, out.output
    assert {i["predicted_class"] for i in json.loads(out.stdout)["images"]} <= {"class0", "class1", "class2"}

"""Issue 7's validation split from config keys: held out of decoder training, scored by
``hood evaluate --validation``, never mixed with the test sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import write_image_folder
from typer.testing import CliRunner

from hood.config import resolve
from hood.data.builtin import VAL_NOISE_SEED, synthetic_set
from hood.data.images import ImageSet
from hood.data.validation import held_out_id_rows, split_aux_classes, split_rows
from hood.errors import ConfigError


def _set(labels: list[int], classes: int) -> ImageSet:
    n = len(labels)
    return ImageSet("s", torch.zeros(n, 3, 2, 2, dtype=torch.uint8), torch.tensor(labels), [f"c{i}" for i in range(classes)])


def test_held_out_id_rows_are_the_last_of_every_class() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1, 0])
    assert held_out_id_rows(labels, 2).tolist() == [2, 5, 6, 7]
    kept, held = split_rows(_set(labels.tolist(), 2), 2)
    assert kept.tolist() == [0, 1, 3, 4] and labels[held].tolist() == [0, 1, 1, 0]
    with pytest.raises(ConfigError, match="val_id_per_class.*class 0 has only 4"):
        held_out_id_rows(labels, 4)
    assert split_rows(_set([0, 1], 2), 0)[0].tolist() == [0, 1]  # 0: nothing held out


def test_held_out_aux_classes_are_the_last_folders() -> None:
    pool = _set([0, 1, 2, 3, 2, 0], 4)
    kept, held = split_aux_classes(pool, 2, "pool")
    assert kept.labels.tolist() == [0, 1, 0] and held.labels.tolist() == [2, 3, 2]
    with pytest.raises(ConfigError, match="only 4 classes"):
        split_aux_classes(pool, 4, "pool")
    flat = ImageSet("flat", torch.zeros(3, 3, 2, 2, dtype=torch.uint8))
    with pytest.raises(ConfigError, match="no class folders"):
        split_aux_classes(flat, 1, "flat")
    with pytest.raises(ConfigError, match="val_aux_classes"):
        resolve(None, {"data.val_aux_classes": -1}, None)


def test_train_decoder_holds_out_and_evaluate_validation_scores_only_that(tmp_path: Path, id_folder: Path, tiny_classifier: Path) -> None:
    from hood.cli.app import app
    from hood.jobs.train_decoder import train_decoder
    from hood.models.checkpoint import safe_load
    from hood.runs import create_run

    aux = write_image_folder(tmp_path / "pool", classes=4, per_class=5, offset=500)
    named = {
        "data.id": str(id_folder), "data.aux": str(aux), "data.ood": [str(aux), "uniform-noise"], "model.arch": "wrn10_2",
        "model.classifier": str(tiny_classifier), "decoder.epochs": 1, "decoder.batch_size": 8, "decoder.num_ood": 15,
        "data.val_id_per_class": 2, "data.val_aux_classes": 1, "run.device": "cpu", "run.num_threads": 1,
        "run.out": str(tmp_path / "dec"), "evaluate.methods": ["heatmap", "heatmap+energy", "knn"], "evaluate.knn_k": 3,
    }
    cfg = resolve(None, named, None)
    run = train_decoder(cfg, None, create_run(cfg, "train-decoder"))
    meta = safe_load(run.file("decoder.pt"))["meta"]
    held = set(held_out_id_rows(torch.arange(3).repeat_interleave(12), 2).tolist())  # id_folder: 3 classes x 12, sorted
    assert len(meta["id_rows"]) == 30 and not held & set(meta["id_rows"].tolist())
    samples = json.loads(run.file("ood_samples.json").read_text())
    assert samples["pool_size"] == 15  # 3 of the 4 aux classes: the last one is validation OOD

    args = ["evaluate", "--run", str(run.path), "--validation", "--classifier", str(tiny_classifier), "-d", str(id_folder),
            "--ood", f"{aux},uniform-noise,blobs", "--methods", "heatmap,heatmap+energy,knn", "--device", "cpu", "--json", "-q",
            "--set", "model.arch=wrn10_2", "--set", "evaluate.knn_k=3", "--set", "run.num_threads=1"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout)
    assert res["n_id"] == 6 and "validation split" in res["id_dataset"]
    # never the aux set itself, nor the test set's noise images: another seeded draw of the same noise
    assert list(res["results"]["heatmap"]) == ["pool-val", "uniform-noise-val", "blobs-val", "mean"]

    val_noise, test_noise = synthetic_set("uniform-noise", seed=VAL_NOISE_SEED), synthetic_set("uniform-noise")
    assert not torch.equal(val_noise.images, test_noise.images)
    assert (run.path / "scores" / "heatmap" / "val-uniform-noise-val.npz").is_file()
    assert res["results"]["heatmap"]["uniform-noise-val"]["n"] == len(val_noise)
    assert res["results"]["heatmap"]["blobs-val"]["n"] == 2000 and (run.path / "scores" / "heatmap" / "val-blobs-val.npz").is_file()
    assert res["results"]["heatmap"]["pool-val"]["n"] == 5
    assert res["validation"]["n_fit"] == 30 and json.loads(run.file("validation.json").read_text()) == res
    assert not run.file("results.json").exists()  # the test results are another command's
    assert (run.path / "scores" / "knn" / "val-id.npz").is_file() and not (run.path / "scores" / "knn" / "id.npz").exists()
    fit = safe_load(run.path / "fits" / "knn.pt")
    assert fit["key"]["n_train"] == 30 and fit["state"]["bank"].shape[0] == 30  # the held-out ID rows are not in the bank


def test_validation_needs_a_run_with_a_split(tmp_path: Path, id_folder: Path, ood_folder: Path, tiny_classifier: Path) -> None:
    from hood.jobs.evaluate import evaluate
    from hood.jobs.train_decoder import train_decoder
    from hood.runs import create_run

    named = {
        "data.id": str(id_folder), "data.aux": str(ood_folder), "data.ood": ["uniform-noise"], "model.arch": "wrn10_2",
        "model.classifier": str(tiny_classifier), "decoder.epochs": 1, "decoder.batch_size": 8, "decoder.num_ood": 6,
        "run.device": "cpu", "run.num_threads": 1, "run.out": str(tmp_path / "dec"), "evaluate.methods": ["heatmap"],
    }
    run = train_decoder(resolve(None, named, None), None, create_run(resolve(None, named, None), "train-decoder"))
    with pytest.raises(ConfigError, match="holds no validation split.*val_id_per_class"):
        evaluate(resolve(None, {**named, "evaluate.validation": True}, None), str(run.path))

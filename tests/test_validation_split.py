"""The validation split from config keys: images the classifier and decoder never trained on, scored by
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
from hood.data.validation import id_test_halves, split_aux_classes
from hood.errors import ConfigError


def _set(labels: list[int], classes: int) -> ImageSet:
    n = len(labels)
    return ImageSet("s", torch.zeros(n, 3, 2, 2, dtype=torch.uint8), torch.tensor(labels), [f"c{i}" for i in range(classes)])


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


def test_test_halves_are_a_seeded_partition() -> None:
    val, test = id_test_halves(11, seed=4)
    assert len(val) == 5 and len(test) == 6 and sorted(val.tolist() + test.tolist()) == list(range(11))
    assert val.tolist() == sorted(val.tolist()) and test.tolist() == sorted(test.tolist())
    assert torch.equal(id_test_halves(11, seed=4)[0], val)  # the same seed, the same halves
    assert any(not torch.equal(id_test_halves(11, seed=s)[0], val) for s in range(5, 9))
    assert val.tolist() != list(range(5))  # a draw, not the first rows of a class-sorted folder
    with pytest.raises(ConfigError, match="val_id_source' is test.*1 image.*at least 2"):
        id_test_halves(1, seed=0)


def test_validation_on_half_of_the_id_test_split(tmp_path: Path, id_folder: Path, tiny_classifier: Path) -> None:
    """data.val_id_source=test: validation scores one half of the ID test images, the test table the other,
    and each records which; a decoder trained for that split refuses a validation that would not halve."""
    import numpy as np

    from hood.jobs.evaluate import evaluate
    from hood.jobs.train_decoder import train_decoder
    from hood.runs import create_run

    aux = write_image_folder(tmp_path / "pool", classes=4, per_class=5, offset=500)
    named = {
        "data.id": str(id_folder), "data.aux": str(aux), "data.ood": ["uniform-noise"], "model.arch": "wrn10_2",
        "model.classifier": str(tiny_classifier), "decoder.epochs": 1, "decoder.batch_size": 8, "decoder.num_ood": 15,
        "data.val_id_source": "test", "data.val_aux_classes": 1, "data.ood_draw_seed": 3, "run.device": "cpu",
        "run.num_threads": 1, "run.out": str(tmp_path / "dec"), "evaluate.methods": ["msp", "knn"], "evaluate.params.knn.k": 3,
    }
    run = train_decoder(resolve(None, named, None), None, create_run(resolve(None, named, None), "train-decoder"))
    val = evaluate(resolve(None, {**named, "evaluate.validation": True}, None), str(run.path)).results
    test = evaluate(resolve(None, named, None), str(run.path)).results
    assert val["n_id"] == 6 and test["n_id"] == 6  # id_folder's test split: 12 images
    assert val["validation"]["val_id_source"] == "test" and val["validation"]["n_fit"] == 36  # every training image
    assert val["validation"]["n_test_half"] == 6
    assert val["draw"]["id"] == {"count": 6, "size": 6, "half": "validation", "half_seed": 3}
    assert test["draw"]["id"] == {"count": 6, "size": 6, "half": "test", "half_seed": 3}
    assert list(val["results"]["msp"]) == ["pool-val", "uniform-noise-val", "mean"]
    rows = {p: np.load(run.path / "scores" / "knn" / f"{p}id.npz")["rows"].tolist() for p in ("val-", "")}
    assert sorted(rows["val-"] + rows[""]) == list(range(12))  # disjoint halves of the whole test split
    assert rows["val-"] == id_test_halves(12, 3)[0].tolist()

    with pytest.raises(ConfigError, match="^--validation needs validation ID images the classifier never saw: --set data.val_id_source=test"):
        evaluate(resolve(None, {**named, "data.val_id_source": None, "evaluate.validation": True}, None), str(run.path))
    with pytest.raises(ConfigError, match="may have trained on the images the classifier held out"):
        evaluate(resolve(None, {**named, "data.val_id_source": "classifier", "evaluate.validation": True}, None), str(run.path))

    # the baselines need no decoder run to be validated on half of the ID test split
    alone = {**named, "evaluate.validation": True, "data.val_ood": ["uniform-noise"], "run.out": str(tmp_path / "base")}
    res = evaluate(resolve(None, alone, None)).results
    assert res["n_id"] == 6 and list(res["results"]["knn"]) == ["uniform-noise-val", "mean"]
    assert json.loads((tmp_path / "base" / "run.json").read_text())["status"] == "complete"
    with pytest.raises(ConfigError, match="name it with --run RUN, or validate on half of the ID test split"):
        evaluate(resolve(None, {**alone, "data.val_id_source": "classifier", "run.out": str(tmp_path / "base2")}, None))
    assert not (tmp_path / "base2").exists()  # refused before a run directory is made


def test_train_decoder_holds_out_and_evaluate_validation_scores_only_that(tmp_path: Path, id_folder: Path, tiny_classifier: Path) -> None:
    from hood.cli.app import app
    from hood.jobs.train_decoder import train_decoder
    from hood.models.checkpoint import safe_load
    from hood.runs import create_run

    aux = write_image_folder(tmp_path / "pool", classes=4, per_class=5, offset=500)
    named = {
        "data.id": str(id_folder), "data.aux": str(aux), "data.ood": [str(aux), "uniform-noise"], "model.arch": "wrn10_2",
        "model.classifier": str(tiny_classifier), "decoder.epochs": 1, "decoder.batch_size": 8, "decoder.num_ood": 15,
        "data.val_id_source": "test", "data.val_aux_classes": 1, "run.device": "cpu", "run.num_threads": 1,
        "run.out": str(tmp_path / "dec"), "evaluate.methods": ["heatmap", "heatmap+vim", "knn"], "evaluate.params.knn.k": 3,
    }
    cfg = resolve(None, named, None)
    run = train_decoder(cfg, None, create_run(cfg, "train-decoder"))
    meta = safe_load(run.file("decoder.pt"))["meta"]
    assert meta["id_rows"].tolist() == list(range(36))  # the validation ID images are test images: every training image trains
    samples = json.loads(run.file("ood_samples.json").read_text())
    assert samples["pool_size"] == 15  # 3 of the 4 aux classes: the last one is validation OOD

    args = ["evaluate", "--run", str(run.path), "--validation", "--classifier", str(tiny_classifier), "-d", str(id_folder),
            "--ood", f"{aux},uniform-noise,blobs", "--ood-count", "40", "--methods", "heatmap,heatmap+vim,knn", "--device", "cpu", "--json", "-q",
            "--set", "model.arch=wrn10_2", "--set", "evaluate.params.knn.k=3", "--set", "run.num_threads=1",
            "--set", "data.val_id_source=test"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout)
    assert res["n_id"] == 6 and "validation split" in res["id_dataset"]
    # never the aux set itself, nor the test set's noise images: another seeded draw of the same noise
    assert list(res["results"]["heatmap"]) == ["pool-val", "uniform-noise-val", "blobs-val", "mean"]

    val_noise, test_noise = synthetic_set("uniform-noise", seed=VAL_NOISE_SEED), synthetic_set("uniform-noise")
    assert not torch.equal(val_noise.images, test_noise.images)
    assert (run.path / "scores" / "heatmap" / "val-uniform-noise-val.npz").is_file()
    assert res["results"]["heatmap"]["uniform-noise-val"]["n"] == 40 < len(val_noise)
    assert res["results"]["heatmap"]["blobs-val"]["n"] == 40 and (run.path / "scores" / "heatmap" / "val-blobs-val.npz").is_file()
    assert res["results"]["heatmap"]["pool-val"]["n"] == 5  # fewer than --ood-count: all of them
    assert res["validation"]["n_fit"] == 36 and json.loads(run.file("validation.json").read_text()) == res
    assert not run.file("results.json").exists()  # the test results are another command's
    assert (run.path / "scores" / "knn" / "val-id.npz").is_file() and not (run.path / "scores" / "knn" / "id.npz").exists()
    fit = safe_load(run.path / "fits" / "knn.pt")
    assert fit["key"]["n_train"] == 36 and fit["state"]["bank"].shape[0] == 36


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
    with pytest.raises(ConfigError, match="^--validation needs validation ID images the classifier never saw"):
        evaluate(resolve(None, {**named, "evaluate.validation": True}, None), str(run.path))


def test_validation_on_the_images_the_classifier_never_saw(tmp_path: Path, id_folder: Path) -> None:
    """data.val_id_source=classifier: pretrain records the rows it held out, train-decoder keeps them out
    too, and evaluate --validation scores exactly them as the validation ID set."""
    from hood.cli.app import app
    from hood.jobs.pretrain import pretrain
    from hood.jobs.train_decoder import train_decoder
    from hood.models.checkpoint import safe_load
    from hood.runs import create_run

    base = {"data.id": str(id_folder), "model.arch": "wrn10_2", "run.device": "cpu", "run.num_threads": 1}
    pcfg = resolve(None, {**base, "pretrain.epochs": 1, "pretrain.batch_size": 12, "pretrain.val_fraction": 0.25,
                          "run.out": str(tmp_path / "clf")}, None)
    clf = pretrain(pcfg, None, create_run(pcfg, "pretrain")).file("classifier.pt")
    clf_meta = safe_load(clf)["meta"]
    held = clf_meta["held_out_rows"]
    assert clf_meta["n_train"] == 36 and len(held) == 9 == len(set(held)) and all(0 <= r < 36 for r in held)

    aux = write_image_folder(tmp_path / "pool", classes=4, per_class=5, offset=500)
    named = {**base, "data.aux": str(aux), "data.ood": ["uniform-noise"], "model.classifier": str(clf),
             "decoder.epochs": 1, "decoder.batch_size": 8, "decoder.num_ood": 15, "data.val_id_source": "classifier",
             "data.val_aux_classes": 1, "run.out": str(tmp_path / "dec"), "evaluate.methods": ["heatmap"]}
    cfg = resolve(None, named, None)
    run = train_decoder(cfg, None, create_run(cfg, "train-decoder"))
    id_rows = safe_load(run.file("decoder.pt"))["meta"]["id_rows"].tolist()
    assert len(id_rows) == 27 and not set(held) & set(id_rows)

    args = ["evaluate", "--run", str(run.path), "--validation", "--classifier", str(clf), "-d", str(id_folder),
            "--ood", "uniform-noise", "--methods", "heatmap", "--device", "cpu", "--json", "-q",
            "--set", "model.arch=wrn10_2", "--set", "run.num_threads=1", "--set", "data.val_id_source=classifier"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout)
    assert res["n_id"] == 9 and res["validation"]["val_id_source"] == "classifier" and res["validation"]["n_fit"] == 27
    from rich.console import Console

    from hood.cli.render import results_table

    console = Console(record=True, width=200)
    console.print(results_table(res))
    assert "(9 held-out images" in console.export_text()  # not "test images": these are training images


def test_classifier_source_needs_a_classifier_that_recorded_its_held_out_rows(tmp_path: Path, id_folder: Path,
                                                                               tiny_classifier: Path) -> None:
    from hood.data.validation import classifier_held_out_rows, decoder_train_rows
    from hood.jobs.train_decoder import train_decoder
    from hood.runs import create_run

    named = {"data.id": str(id_folder), "data.aux": str(id_folder), "data.ood": ["uniform-noise"], "model.arch": "wrn10_2",
             "model.classifier": str(tiny_classifier), "decoder.epochs": 1, "decoder.num_ood": 6, "run.device": "cpu",
             "data.val_id_source": "classifier", "run.out": str(tmp_path / "dec")}
    cfg = resolve(None, named, None)
    with pytest.raises(ConfigError, match="does not record which training images it never saw.*use data.val_id_source=test$") as info:
        train_decoder(cfg, None, create_run(cfg, "train-decoder"))  # a classifier from elsewhere (e.g. the authors')
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="held out rows of a 50-image training split and this ID set has 36"):
        classifier_held_out_rows({"held_out_rows": [1, 2], "n_train": 50}, 36, "clf.pt")
    with pytest.raises(ConfigError, match="no usable training images"):
        classifier_held_out_rows({"held_out_rows": [], "n_train": 36}, 36, "clf.pt")
    kept = decoder_train_rows(_set([0] * 6, 1), "classifier", {"held_out_rows": [4, 1, 4], "n_train": 6}, "c")
    assert kept.tolist() == [0, 2, 3, 5]
    assert decoder_train_rows(_set([0] * 6, 1), "test", {}, "c").tolist() == list(range(6))
    with pytest.raises(ConfigError, match="data.val_id_source.*must be test .*or classifier .*got 'held'"):
        resolve(None, {"data.val_id_source": "held"}, None)


def test_far_ood_validation_sets_from_data_val_ood(tmp_path: Path, id_folder: Path, tiny_classifier: Path) -> None:
    """data.val_ood: a flat archive of grayscale characters is scored beside the held-out aux classes and the
    validation noise, in validation.json and the table; with --ood-count every validation set is drawn."""
    import tarfile

    import numpy as np
    from PIL import Image

    from hood.cli.app import app
    from hood.jobs.train_decoder import train_decoder
    from hood.runs import create_run

    chars = tmp_path / "chars"
    chars.mkdir()
    rng = np.random.default_rng(3)
    for i in range(7):
        Image.fromarray((rng.random((40, 40)) > 0.8).astype(np.uint8) * 255, mode="L").save(chars / f"{i:04d}.png")
    archive = tmp_path / "chars.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for f in sorted(chars.iterdir()):
            tf.add(f, arcname=f.name)
    aux = write_image_folder(tmp_path / "pool", classes=4, per_class=5, offset=500)
    named = {
        "data.id": str(id_folder), "data.aux": str(aux), "data.ood": ["uniform-noise"], "model.arch": "wrn10_2",
        "model.classifier": str(tiny_classifier), "decoder.epochs": 1, "decoder.batch_size": 8, "decoder.num_ood": 15,
        "data.val_aux_classes": 1, "run.device": "cpu", "run.num_threads": 1, "run.out": str(tmp_path / "dec"),
    }
    cfg = resolve(None, named, None)
    run = train_decoder(cfg, None, create_run(cfg, "train-decoder"))

    args = ["evaluate", "--run", str(run.path), "--validation", "--classifier", str(tiny_classifier), "-d", str(id_folder),
            "--ood", "uniform-noise", "--methods", "msp", "--device", "cpu", "-q", "--set", "model.arch=wrn10_2",
            "--set", "run.num_threads=1", "--set", f"data.val_ood=[{archive}]", "--set", "data.val_id_source=test"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "chars-val" in out.stdout and "pool-val" in out.stdout  # the validation table
    res = json.loads(run.file("validation.json").read_text())
    assert list(res["results"]["msp"]) == ["pool-val", "uniform-noise-val", "chars-val", "mean"]
    assert res["results"]["msp"]["chars-val"]["n"] == 7 and res["validation"]["val_ood"] == [str(archive)]
    assert (run.path / "scores" / "msp" / "val-chars-val.npz").is_file()

    out = CliRunner().invoke(app, [*args, "--ood-count", "3"])
    assert out.exit_code == 0, out.output
    res = json.loads(run.file("validation.json").read_text())
    assert res["draw"]["ood"]["chars-val"] == {"count": 3, "size": 7} and res["results"]["msp"]["pool-val"]["n"] == 3

    with pytest.raises(ConfigError, match="data.val_ood.*OOD test set"):
        resolve(None, {**named, "data.val_ood": [str(archive)], "data.ood": [str(archive)]}, None)

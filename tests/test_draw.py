"""Which images evaluate scores when a set is larger than its count: a seeded random draw (every method and
every run.seed the same rows), or the first rows (data.ood_draw=first), recorded in results.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_image_folder

from hood.config import resolve
from hood.data.draw import draw_rows
from hood.errors import ConfigError

PER_CLASS = 4  # the class-sorted OOD folder: 10 classes x 4 images, rows 4c..4c+3 are class c


def test_draw_rows_are_a_sorted_seeded_sample_without_replacement() -> None:
    rows = draw_rows(1000, 100, "random", 0)
    assert len(rows) == 100 and len(set(rows.tolist())) == 100 and rows.tolist() == sorted(rows.tolist())
    assert 0 <= int(rows.min()) and int(rows.max()) < 1000 and int(rows.max()) > 100  # not the first rows
    assert draw_rows(1000, 100, "random", 0).tolist() == rows.tolist()
    assert draw_rows(1000, 100, "random", 1).tolist() != rows.tolist()
    assert draw_rows(1000, 100, "first", 0).tolist() == list(range(100))
    assert draw_rows(50, 100, "random", 0).tolist() == list(range(50))  # a set no larger than its count: all of it
    assert draw_rows(50, None, "random", 0).tolist() == list(range(50))
    with pytest.raises(ConfigError, match="data.ood_draw"):
        resolve(None, {"data.ood_draw": "last"}, None)


def _evaluate(tmp_path: Path, id_folder: Path, tiny_classifier: Path, ood: Path, name: str, **keys: object) -> tuple[Path, dict]:
    from hood.jobs.evaluate import evaluate

    named = {"data.id": str(id_folder), "data.ood": [str(ood)], "data.ood_count": 2 * PER_CLASS, "model.arch": "wrn10_2",
             "model.classifier": str(tiny_classifier), "evaluate.methods": ["msp", "energy"], "run.device": "cpu",
             "run.num_threads": 1, "run.out": str(tmp_path / name), **keys}
    result = evaluate(resolve(None, named, None))
    return result.run.path, json.loads(result.run.file("results.json").read_text())


def _npz(run: Path, method: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(run / "scores" / method / f"{name}.npz") as f:
        return f["scores"], f["rows"]


def test_a_class_sorted_set_is_drawn_across_its_classes_the_same_for_every_method_and_seed(
        tmp_path: Path, id_folder: Path, tiny_classifier: Path) -> None:
    ood = write_image_folder(tmp_path / "sorted", classes=10, per_class=PER_CLASS, offset=300)
    run, res = _evaluate(tmp_path, id_folder, tiny_classifier, ood, "a")
    _, rows = _npz(run, "msp", "sorted")
    assert len(rows) == 2 * PER_CLASS and len(set((rows // PER_CLASS).tolist())) >= 5
    assert _npz(run, "energy", "sorted")[1].tolist() == rows.tolist()
    assert res["draw"] == {"mode": "random", "seed": 0, "id": {"count": 12, "size": 12},
                           "ood": {"sorted": {"count": 2 * PER_CLASS, "size": 10 * PER_CLASS}}}

    again, _ = _evaluate(tmp_path, id_folder, tiny_classifier, ood, "b", **{"run.seed": 5})  # run.seed: not the draw's
    assert _npz(again, "msp", "sorted")[1].tolist() == rows.tolist()
    assert _npz(again, "msp", "sorted")[0].tolist() == _npz(run, "msp", "sorted")[0].tolist()
    other, res_other = _evaluate(tmp_path, id_folder, tiny_classifier, ood, "c", **{"data.ood_draw_seed": 3})
    assert _npz(other, "msp", "sorted")[1].tolist() != rows.tolist() and res_other["draw"]["seed"] == 3

    first, res_first = _evaluate(tmp_path, id_folder, tiny_classifier, ood, "d", **{"data.ood_draw": "first"})
    assert _npz(first, "msp", "sorted")[1].tolist() == list(range(2 * PER_CLASS))  # classes 0 and 1 only
    assert res_first["draw"]["mode"] == "first"
    # the first rows are the images scored before the draw existed: a folder of just those images scores the same
    head = write_image_folder(tmp_path / "head", classes=2, per_class=PER_CLASS, offset=300)
    whole, _ = _evaluate(tmp_path, id_folder, tiny_classifier, head, "e")
    for m in ("msp", "energy"):
        assert _npz(whole, m, "head")[0] == pytest.approx(_npz(first, m, "sorted")[0])


def test_id_test_count_draws_the_id_test_split_by_the_same_rule(tmp_path: Path, id_folder: Path, tiny_classifier: Path) -> None:
    ood = write_image_folder(tmp_path / "sorted", classes=10, per_class=PER_CLASS, offset=300)
    run, res = _evaluate(tmp_path, id_folder, tiny_classifier, ood, "a", **{"data.id_test_count": 6})
    _, rows = _npz(run, "msp", "id")
    assert rows.tolist() == draw_rows(12, 6, "random", 0).tolist() != list(range(6))
    assert res["n_id"] == 6 and res["draw"]["id"] == {"count": 6, "size": 12}
    first, _ = _evaluate(tmp_path, id_folder, tiny_classifier, ood, "b", **{"data.id_test_count": 6, "data.ood_draw": "first"})
    assert _npz(first, "msp", "id")[1].tolist() == list(range(6))

"""``data.aux_synthetic``: a seeded draw of a built-in synthetic set joins the decoder's outliers (Outlier
Exposure's recipe), never the images its test or validation sets hold, never a set the config tests on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hood.config import resolve
from hood.data.builtin import NOISE_SEED, TRAIN_NOISE_SEED, VAL_NOISE_SEED, synthetic_set
from hood.data.images import ImageSet
from hood.errors import ConfigError


def test_join_keeps_both_sets_rows_and_names_in_order() -> None:
    a = ImageSet("a", torch.zeros(2, 3, 4, 4, dtype=torch.uint8), names=["a0", "a1"], skipped=["bad.jpg"])
    b = ImageSet("b", torch.full((3, 3, 4, 4), 7, dtype=torch.uint8), names=["b0", "b1", "b2"])
    j = a.join(b)
    assert len(j) == 5 and j.name == "a" and j.labels is None
    assert j.names == ["a0", "a1", "b0", "b1", "b2"] and j.skipped == ["bad.jpg"]
    assert torch.equal(j.images[2:], b.images) and torch.equal(j.images[:2], a.images)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"data.aux_synthetic": "blobs"}, r"'data.aux_synthetic_count' must be at least 1 when data.aux_synthetic is 'blobs', got 0"),
        ({"data.aux_synthetic_count": 10}, r"'data.aux_synthetic' must be one of uniform-noise, gaussian-noise, blobs, got ''"),
        ({"data.aux_synthetic": "blob", "data.aux_synthetic_count": 10}, r"'data.aux_synthetic' must be one of .*, got 'blob'"),
        ({"data.aux_synthetic": "blobs", "data.aux_synthetic_count": -1}, r"'data.aux_synthetic_count' must be 0 or more, got -1"),
    ],
)
def test_config_refuses_half_or_unknown_synthetic_outliers(sets: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve(None, sets, None)


def _named(tmp_path: Path, id_folder: Path, aux: Path, clf: Path, **extra: object) -> dict:
    return {
        "data.id": str(id_folder), "data.aux": str(aux), "data.ood": ["uniform-noise"], "model.arch": "wrn10_2",
        "model.classifier": str(clf), "decoder.epochs": 1, "decoder.batch_size": 8, "decoder.num_ood": 6,
        "run.device": "cpu", "run.num_threads": 1, "run.out": str(tmp_path / "dec"), "evaluate.methods": ["heatmap"],
        "run.seed": 3, **extra,
    }


def test_train_decoder_adds_its_own_draw_of_the_synthetic_set(tmp_path: Path, id_folder: Path, ood_folder: Path, tiny_classifier: Path) -> None:
    from hood.jobs.train_decoder import synthetic_outliers, train_decoder
    from hood.models.checkpoint import safe_load
    from hood.runs import create_run

    cfg = resolve(None, _named(tmp_path, id_folder, ood_folder, tiny_classifier, **{"data.aux_synthetic": "blobs", "data.aux_synthetic_count": 4}), None)
    run = train_decoder(cfg, None, create_run(cfg, "train-decoder"))
    samples = json.loads(run.file("ood_samples.json").read_text())
    assert samples["synthetic"] == {"set": "blobs", "count": 4, "seed": TRAIN_NOISE_SEED + 3}
    assert len(samples["indices"]) == 6 and samples["names"][-4:] == [f"blobs-train_{i:05d}" for i in range(4)]
    assert safe_load(run.file("decoder.pt"))["meta"]["num_ood"] == 10  # 6 pool images + 4 blobs
    drawn = synthetic_outliers(cfg).images
    assert drawn.shape == (4, 3, 32, 32)
    for seed in (NOISE_SEED, VAL_NOISE_SEED):  # neither the test set's blobs nor validation's
        assert not torch.equal(drawn, synthetic_set("blobs", 4, 32, seed=seed).images)


def test_train_decoder_refuses_a_synthetic_set_the_config_tests_on(tmp_path: Path, id_folder: Path, ood_folder: Path, tiny_classifier: Path) -> None:
    from hood.jobs.train_decoder import train_decoder
    from hood.runs import create_run

    named = _named(tmp_path, id_folder, ood_folder, tiny_classifier, **{"data.aux_synthetic": "uniform-noise", "data.aux_synthetic_count": 4})
    cfg = resolve(None, named, None)
    with pytest.raises(ConfigError, match=r"'data.aux_synthetic' is 'uniform-noise', which is also an OOD test set"):
        train_decoder(cfg, None, create_run(cfg, "train-decoder"))


def test_cli_refuses_it_in_one_line_before_any_run_directory(tmp_path: Path, id_folder: Path, ood_folder: Path, tiny_classifier: Path) -> None:
    from typer.testing import CliRunner

    from hood.cli.app import app

    out = tmp_path / "runs"
    r = CliRunner().invoke(app, [
        "train-decoder", "-d", str(id_folder), "--aux", str(ood_folder), "--classifier", str(tiny_classifier), "--out", str(out),
        "--device", "cpu", "--set", "model.arch=wrn10_2", "--set", "data.ood=[uniform-noise]",
        "--set", "data.aux_synthetic=uniform-noise", "--set", "data.aux_synthetic_count=4",
    ])
    text = r.output.strip()
    assert r.exit_code == 2 and len(text.splitlines()) == 1 and text.startswith("error:"), text
    assert "which is also an OOD test set" in text and not out.exists()

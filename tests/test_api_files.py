"""The Python API on files: ``hood.load_classifier`` for hood's and the authors' checkpoints, and PIL images and
paths given to ``predict`` / ``score``, read by the rule ``hood score`` reads files with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import save_random_classifier, write_flat_folder
from PIL import Image
from test_checkpoint import authors_file
from typer.testing import CliRunner

import hood


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A one-epoch train-decoder run (no evaluation: scoring files needs no threshold)."""
    from conftest import tiny_decoder_run

    root = tmp_path_factory.mktemp("files")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOOD_CACHE", str(root / "_cache"))
        run = tiny_decoder_run(root, per_class=6, test_per_class=2, ood_count=8, **{"decoder.num_ood": 8})
    torch.set_num_threads(threads)
    return {"root": root, "run": run}


def test_load_classifier_reads_hoods_checkpoint_and_the_authors(tmp_path: Path) -> None:
    own = hood.load_classifier(save_random_classifier(tmp_path / "clf.pt"))
    assert own.arch == "wrn10_2" and own.classes == ["class0", "class1", "class2"] and not own.training
    authors = hood.load_classifier(authors_file(own, tmp_path / "authors.pt"))
    assert authors.arch == "wrn10_2" and authors.classes is None
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(own(x), authors(x), atol=1e-2)  # the authors' files are fp16
    scores = hood.MSP(own, device="cpu").predict(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8))
    assert scores.shape == (4,)


def test_load_classifier_says_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as err:
        hood.load_classifier(tmp_path / "missing.pt")
    assert "\n" not in str(err.value) and "missing.pt" in str(err.value)


def test_load_images_resizes_the_shorter_side_and_centre_crops(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (20, 40, 3), dtype=np.uint8)  # 40 wide, 20 high
    Image.fromarray(wide).save(tmp_path / "wide.png")
    out = hood.load_images([tmp_path / "wide.png", Image.fromarray(wide)], 10)
    assert out.shape == (2, 3, 10, 10) and out.dtype == torch.uint8 and torch.equal(out[0], out[1])
    expected = np.asarray(Image.fromarray(wide).resize((20, 10), Image.BILINEAR, reducing_gap=None).crop((5, 0, 15, 10)))
    assert np.array_equal(out[0].permute(1, 2, 0).numpy(), expected)


def test_images_of_several_sizes_without_a_size_name_the_fix(tmp_path: Path) -> None:
    write_flat_folder(tmp_path / "a", count=1, size=32)
    write_flat_folder(tmp_path / "b", count=1, size=48)
    files = [tmp_path / "a" / "img000.png", tmp_path / "b" / "img000.png"]
    with pytest.raises(ValueError, match=r"not all of one square size \(32x32, 48x48\).*hood.load_images\(files, size\)"):
        hood.MSP(hood.load_classifier(save_random_classifier(tmp_path / "clf.pt")), device="cpu").predict(files)
    with pytest.raises(ValueError, match="no such file"):
        hood.load_images([tmp_path / "nope.png"], 32)
    with pytest.raises(ValueError, match="a folder"):
        hood.load_images(tmp_path / "a", 32)


def test_a_run_scores_files_as_hood_score_does(pipeline: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = sorted(write_flat_folder(tmp_path / "mine", count=3, size=40).glob("*.png"))  # not the run's size
    run = hood.load_run(pipeline["run"], device="cpu")
    from_files = run.score([str(f) for f in files])
    from_pil = run.score([Image.open(f) for f in files])
    np.testing.assert_array_equal(from_files, from_pil)
    np.testing.assert_array_equal(from_files, run.score(hood.load_images(files, run.image_size)))
    from hood.cli.app import app

    monkeypatch.setenv("HOOD_CACHE", str(pipeline["root"] / "_cache"))
    out = CliRunner().invoke(app, ["score", *map(str, files), "--run", str(pipeline["run"]), "--method", "heatmap",
                                   "--device", "cpu", "--json", "-q"])
    assert out.exit_code == 0, out.output
    cli = [i["score"] for i in json.loads(out.stdout)["images"]]
    np.testing.assert_allclose(from_files, cli, rtol=1e-6)
    assert run.predict_class(files[0]) and len(run.heatmaps(files)) == 3

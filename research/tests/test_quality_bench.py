"""research/quality.sh end to end on tiny fixtures (validation with a far-OOD archive, then the test table),
and research/quality_table.py: per-set and mean figures over seeds, the mean over exactly the named sets, and
the median-score ratio read off the runs' score files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1]  # research/
SCRIPT = BENCH / "quality_table.py"
SETS = {"tin32-test": 0.10, "mnist-test": 0.20, "textures10": 0.30, "uniform-noise": 0.40, "gaussian-noise": 0.90}


def _run_dir(folder: Path, seed: int) -> Path:
    run = folder / f"q-seed{seed}"
    results = {m: {s: {"fpr95": f + seed * 0.02, "auroc": 1 - f / 2, "n": 10} for s, f in SETS.items()} for m in ("heatmap", "heatmap+vim", "msp")}
    for per_set in results.values():
        per_set["mean"] = {"fpr95": 0.99, "auroc": 0.5, "n": 50}  # evaluate's mean over all five: not the table's
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({
        "id_dataset": "cifar10", "n_id": 100, "caption": "", "results": results,
        "draw": {"mode": "random", "seed": 0, "id": {"count": 100, "size": 100}, "ood": {}}}))
    for method, medians in (("heatmap", (2.0, 5.0)), ("heatmap+vim", (1.0, 50.0))):  # the second: z-scores
        for name, median in zip(("id", "tin32-test"), medians, strict=True):
            (run / "scores" / method).mkdir(parents=True, exist_ok=True)
            np.savez(run / "scores" / method / f"{name}.npz", scores=np.array([0.0, median, 100.0]))
    return run / "results.json"


def test_mean_is_over_the_four_target_sets_and_the_heatmap_median_ratio_is_printed(tmp_path: Path) -> None:
    files = [str(_run_dir(tmp_path, s)) for s in (0, 1)]
    out = subprocess.run([sys.executable, str(SCRIPT), *files], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "mean over: tin32-test, mnist-test, textures10, uniform-noise" in out.stdout
    assert "random draw, seed 0" in out.stdout
    row = next(line for line in out.stdout.splitlines() if line.startswith("heatmap "))
    mean_cell = row.split("/")[-2].split()[-1]  # "<fpr>±<std>" of the last column
    assert float(mean_cell.split("±")[0]) == pytest.approx(100 * (np.mean([0.1, 0.2, 0.3, 0.4]) + 0.01), abs=0.05)
    ratio = next(line for line in out.stdout.splitlines() if line.strip().startswith("heatmap") and line.strip().endswith("x"))
    assert ratio.split()[-1] == "2.5x" and "msp" not in out.stdout.split("median score")[1].split("target")[0]
    verdict = next(line for line in out.stdout.splitlines() if line.strip().startswith("heatmap") and "missed" in line)
    # heatmap and msp score alike here: every criterion but the per-set one misses, each said with its figure
    assert "mean FPR95 26.0 > 18" in verdict and "mean AUROC 87.5 < 96" in verdict
    assert "0.0 points below the best baseline's mean (msp 26.0)" in verdict and "median ratio 2.50" in verdict
    assert "vs msp" not in verdict  # level with the best baseline on each set: not 3 points behind
    # a combination's ratio of centred z-score sums means nothing: not shown; its verdict reads the heatmap's
    medians = out.stdout.split("median score")[1].split("target")[0]
    assert next(line for line in medians.splitlines() if line.strip().startswith("heatmap+vim ")).endswith("n/a")
    combo = next(line for line in out.stdout.splitlines() if line.strip().startswith("heatmap+vim") and "missed" in line)
    assert "median ratio 2.50" in combo

    assert "stuck heatmap pixels" not in out.stdout  # healthy decoders (or runs that predate the check): no line
    (tmp_path / "q-seed1" / "run.json").write_text(json.dumps({"stuck_pixels": {"pixels": 225, "of": 1024, "images": 500}}))
    (tmp_path / "q-seed0" / "run.json").write_text(json.dumps({"stuck_pixels": {"pixels": 0, "of": 1024, "images": 500}}))
    out = subprocess.run([sys.executable, str(SCRIPT), *files], capture_output=True, text=True, timeout=60)
    assert "stuck heatmap pixels (docs/method.md#stuck-pixels): q-seed1: 225 of 1024\n" in out.stdout

    explicit = subprocess.run([sys.executable, str(SCRIPT), "--mean-sets", "gaussian-noise", *files], capture_output=True, text=True, timeout=60)
    row = next(line for line in explicit.stdout.splitlines() if line.startswith("msp "))
    assert float(row.split("/")[-2].split()[-1].split("±")[0]) == pytest.approx(91.0, abs=0.05)
    bad = subprocess.run([sys.executable, str(SCRIPT), "--mean-sets", "svhn", *files], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "svhn" in bad.stderr

    # an evaluation still writing seed 1 (evaluate marks it running first, over the previous results): named, not tabled
    for old in ({}, json.loads(Path(files[1]).read_text())):
        Path(files[1]).write_text(json.dumps({**old, "state": "running"}))
        busy = subprocess.run([sys.executable, str(SCRIPT), *files], capture_output=True, text=True, timeout=60)
        assert busy.returncode != 0 and "Traceback" not in busy.stderr
        assert f"{files[1]} holds no finished evaluation (state: running)" in busy.stderr


def _archive(folder: Path, path: Path, flat: bool = False) -> None:
    with tarfile.open(path, "w:gz") as tf:
        if flat:
            for f in sorted(folder.iterdir()):
                tf.add(f, arcname=f.name)
        else:
            tf.add(folder, arcname=folder.name)
    shutil.rmtree(folder)


@pytest.mark.skipif(shutil.which("bash") is None, reason="research/quality.sh is a bash script")
def test_quality_script_prints_validation_with_far_ood_and_the_test_table(tmp_path: Path) -> None:
    from conftest import save_random_classifier, write_flat_folder, write_image_folder  # tests/conftest.py
    from PIL import Image

    fx = tmp_path / "fixtures"
    data = fx / "data"
    data.mkdir(parents=True)
    ident = tmp_path / "cifar10-jpg"
    write_image_folder(ident / "train", per_class=12)
    write_image_folder(ident / "test", per_class=10, offset=100)
    _archive(ident, data / "cifar10-jpg.tar.gz")
    _archive(write_image_folder(tmp_path / "tin32-pool", classes=4, per_class=5, offset=500), data / "tin32-pool.tar.gz")
    _archive(write_flat_folder(tmp_path / "tin32-test", count=8, seed=1), data / "tin32-test.tar.gz", flat=True)
    _archive(write_image_folder(tmp_path / "mnist-test", classes=10, per_class=2, offset=700), data / "mnist-test.tar.gz")
    _archive(write_image_folder(tmp_path / "textures10", classes=2, per_class=4, offset=900), data / "textures10.tar.gz")
    chars = tmp_path / "omniglot-val"
    chars.mkdir()
    for i in range(5):
        Image.fromarray((np.random.default_rng(i).random((40, 40)) > 0.8).astype(np.uint8) * 255, mode="L").save(chars / f"{i}.png")
    _archive(chars, data / "omniglot-val.tar.gz", flat=True)
    (fx / "models").mkdir()
    save_random_classifier(fx / "models" / "cifar10_wrn10_2.pt")
    config = tmp_path / "tiny.yaml"
    config.write_text("name: tiny\nmodel: {arch: wrn10_2}\ndata: {val_aux_classes: 1, val_id_source: test}\n"
                      "decoder: {epochs: 1, batch_size: 8, num_ood: 10}\nrun: {num_threads: 1}\n")
    env = {**os.environ, "HOOD_FIXTURES": str(fx), "CONFIG": str(config), "SEEDS": "0", "METHODS": "msp,energy",
           "DEVICE": "cpu", "OOD_COUNT": "4", "OUT_DIR": str(tmp_path / "runs"), "PY": sys.executable}
    env.pop("SHARED", None)
    out = subprocess.run(["bash", str(BENCH / "quality.sh")], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    validation, test = out.stdout.split("TEST:")
    assert "1 seed(s)" in validation and "omniglot-val" in validation and "uniform-noise-val" in validation
    assert "tin32-pool-val" in validation and "tin32-test" not in validation
    assert "VALIDATION (half of the CIFAR-10 test images" in validation  # the config's val_id_source
    assert "mean over: tin32-test, mnist-test, textures10, uniform-noise" in test and "gaussian-noise" in test
    res = json.loads(next((tmp_path / "runs").glob("*-seed0/results.json")).read_text())
    assert res["draw"]["mode"] == "random" and res["draw"]["ood"]["mnist-test"] == {"count": 4, "size": 20}
    assert res["draw"]["id"] == {"count": 15, "size": 15, "half": "test", "half_seed": 0}  # 30 test images, halved
    val = json.loads(next((tmp_path / "runs").glob("*-seed0/validation.json")).read_text())
    assert val["n_id"] == 15 and val["validation"]["val_id_source"] == "test"


def test_heatmap_figure_puts_the_first_columns_of_two_grids_side_by_side(tmp_path: Path) -> None:
    import torch

    from hood.viz import COLOUR_BAR_WIDTH, heatmap_grid

    paths = []
    for name, value in (("id", 0), ("ood", 255)):
        images = torch.full((7, 3, 32, 32), value, dtype=torch.uint8)
        heatmap_grid(images, torch.zeros(7, 3, 32, 32), np.zeros(7), name).save(tmp_path / f"{name}.png")
        paths.append(str(tmp_path / f"{name}.png"))
    out = tmp_path / "fig.png"
    run = subprocess.run([sys.executable, str(BENCH / "heatmap_figure.py"), *paths, str(out), "--columns", "6"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    from PIL import Image

    fig = np.asarray(Image.open(out).convert("RGB"))
    half = 6 + 6 * 134  # six 128-pixel columns with 6-pixel gaps
    assert fig.shape[1] == 2 * half + 24 + COLOUR_BAR_WIDTH  # the colour bar at the right, once
    assert fig[40, 20].tolist() == [0, 0, 0] and fig[40, half + 24 + 20].tolist() == [255, 255, 255]  # ID input left, OOD right
    bar = fig[40:200, 2 * half + 24 : 2 * half + 30]
    assert len({tuple(p) for p in bar.reshape(-1, 3)}) > 10  # a ramp of colours, not blank
    too_many = subprocess.run([sys.executable, str(BENCH / "heatmap_figure.py"), *paths, str(out), "--columns", "9"],
                              capture_output=True, text=True, timeout=60)
    assert too_many.returncode != 0 and "hood visualize -n" in too_many.stderr

"""``hood visualize`` writes valid PNGs of the expected size: grids, histograms, ROC curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import tiny_config
from PIL import Image
from typer.testing import CliRunner

from hood.viz import COLOUR_BAR_WIDTH


def _png(path: Path) -> Image.Image:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(path)
    img.verify()  # a truncated or corrupt file fails here
    return Image.open(path)


def test_visualize_writes_grids_histograms_and_roc(pipeline: dict[str, Any], tmp_path: Path, monkeypatch) -> None:
    from hood.jobs.visualize import visualize

    monkeypatch.setenv("HOOD_CACHE", str(pipeline["root"] / "_cache"))
    figs = visualize(tiny_config(pipeline["root"]), str(pipeline["run"]), n=5, how="top", out_dir=str(tmp_path / "figs"))
    names = [p.name for p in figs]
    assert names == ["heatmaps_id.png", "heatmaps_ood.png", "heatmaps_uniform-noise.png", "histograms_heatmap.png", "roc.png"]
    assert figs.notes == []  # histograms and ROC came from evaluate's saved scores
    scale, pad, tile = 4, 6, 32 * 4
    for p in figs.paths[:3]:  # 5 columns of 3 nearest-upscaled tiles, a title line and a score line
        assert _png(p).size == (5 * (tile + pad) + pad + COLOUR_BAR_WIDTH, 22 + 3 * (tile + pad) + 16 + pad)
    grid = _png(figs.paths[0]).convert("RGB")
    x0, y0 = pad, 22  # first input tile: nearest-neighbour upscaling makes 4x4 blocks of one colour
    block = {grid.getpixel((x0 + dx, y0 + dy)) for dx in range(scale) for dy in range(scale)}
    assert len(block) == 1
    w, h = _png(figs.paths[3]).size
    assert (w, h) == (800, 320)  # two OOD sets: two 4 x 3.2 inch panels at 100 dpi
    assert _png(figs.paths[4]).size == (800, 320)


def test_visualize_without_saved_scores_falls_back_to_the_drawn_images(pipeline: dict[str, Any], tmp_path: Path, monkeypatch) -> None:
    import shutil

    from hood.jobs.visualize import visualize

    monkeypatch.setenv("HOOD_CACHE", str(pipeline["root"] / "_cache"))
    run = Path(shutil.copytree(pipeline["run"], tmp_path / "copy", ignore=shutil.ignore_patterns("scores", "results.json")))
    figs = visualize(tiny_config(pipeline["root"]), str(run), n=3, how="random")
    assert len(figs) == 5 and figs.notes and all(p.parent == run / "figures" for p in figs)
    assert _png(run / "figures" / "roc.png").size == (800, 320)


def test_cli_visualize_lists_what_it_wrote_and_rejects_a_bad_pick(pipeline: dict[str, Any], monkeypatch) -> None:
    from hood.cli.app import app

    monkeypatch.setenv("HOOD_CACHE", str(pipeline["root"] / "_cache"))
    cfg = pipeline["run"] / "config.yaml"
    base = ["visualize", "-c", str(cfg), "--run", str(pipeline["run"]), "--out-dir", "figs", "-q", "--device", "cpu",
            "--set", "run.num_threads=1"]
    out = CliRunner().invoke(app, [*base, "-n", "2", "--pick", "bottom", "--method", "knn", "--json"])
    assert out.exit_code == 0, out.output
    written = json.loads(out.stdout)["written"]
    assert Path("figs/histograms_knn.png").is_file() and len(written) == 5
    bad = CliRunner().invoke(app, [*base, "--pick", "best"])
    assert bad.exit_code == 2 and "--pick must be top, bottom or random" in bad.output
    # --dataset overrides the config's ID set, as on train-decoder and evaluate
    missing = CliRunner().invoke(app, [*base, "--dataset", str(pipeline["root"] / "no-such-set")])
    assert missing.exit_code == 2 and "no-such-set" in missing.output

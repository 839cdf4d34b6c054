"""The localization benchmark: composites with known masks, pixel AUROC / AUPRO computed by hand, and
``hood evaluate --localization`` on the tiny run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import invoke, one_line_error, tiny_config

from hood.data.composites import AREA, make_composites, paste, region_masks
from hood.detectors.pixel_maps import class_mean_distance_map, class_mean_images, energy_gradient_map
from hood.metrics import aupro, pixel_auroc


def test_masks_cover_the_drawn_share_and_alternate_shapes() -> None:
    masks, shapes = region_masks(40, 32, torch.Generator().manual_seed(0))
    shares = masks.flatten(1).float().mean(1)
    assert shapes[:4] == ["rectangle", "blob", "rectangle", "blob"]
    assert float(shares.min()) >= AREA[0] * 0.8 and float(shares.max()) <= AREA[1] * 1.1
    again, _ = region_masks(40, 32, torch.Generator().manual_seed(0))
    assert torch.equal(masks, again)  # seeded
    for m, s in zip(masks, shapes, strict=True):
        if s == "rectangle":  # a filled box: its bounding box holds nothing else
            ys, xs = torch.nonzero(m, as_tuple=True)
            assert int(m.sum()) == (int(ys.max()) - int(ys.min()) + 1) * (int(xs.max()) - int(xs.min()) + 1)


def test_paste_takes_the_masked_pixels_of_the_ood_image() -> None:
    a = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    b = torch.full((1, 3, 4, 4), 200, dtype=torch.uint8)
    m = torch.zeros(1, 4, 4, dtype=torch.bool)
    m[0, 1:3, 0] = True
    out = paste(a, b, m)
    assert out[0, :, 1:3, 0].eq(200).all() and int(out.sum()) == 200 * 3 * 2
    comp = make_composites(torch.zeros(5, 3, 8, 8, dtype=torch.uint8), b.expand(3, 3, 4, 4).repeat(1, 1, 2, 2), 7, seed=1)
    assert len(comp) == 7 and comp.images.dtype == torch.uint8
    assert torch.equal(comp.images[:, 0] > 0, comp.masks)  # the pasted pixels, nowhere else
    with pytest.raises(ValueError, match="one size"):
        make_composites(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2, 3, 4, 4, dtype=torch.uint8), 2, 0)


def test_pixel_auroc_and_aupro_by_hand() -> None:
    masks = np.zeros((2, 2, 2), dtype=bool)
    masks[0, 0, 0] = masks[1, 0, :] = True  # regions of 1 and 2 pixels, 5 normal pixels
    maps = np.zeros((2, 2, 2))
    maps[0, 0, 0] = 1.0  # finds the small region only
    maps[1, 1, 1] = 0.5  # one false positive above the big region
    # ranked: 1.0 (pos), 0.5 (neg), then a tie of 0 holding 2 pos and 4 neg: AUROC = (1*5 + 2*(4/2)) / (3*5)
    assert pixel_auroc(maps, masks) == pytest.approx((5 + 4) / 15)
    # PRO/FPR points: (0, 0.5) after 1.0, (0.2, 0.5) after 0.5, (1, 1) after the tie; up to FPR 0.3:
    # 0.5*0.2 + the trapezoid 0.2..0.3 rising from 0.5 by (0.5/0.8)*0.1
    expected = (0.5 * 0.2 + 0.1 * (0.5 + (0.5 + 0.5 * 0.1 / 0.8)) / 2) / 0.3
    assert aupro(maps, masks) == pytest.approx(expected)
    assert aupro(masks.astype(float), masks) == pytest.approx(1.0)
    assert aupro(np.zeros_like(maps), masks) == pytest.approx(0.15)  # the diagonal's area up to 0.3, over 0.3
    with pytest.raises(ValueError, match="both"):
        pixel_auroc(maps, np.zeros_like(masks))


def test_reference_maps_mark_what_differs_from_the_class() -> None:
    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    images[2:] = 100
    labels = torch.tensor([0, 0, 1, 1])
    means = class_mean_images(images, labels, 3)
    assert torch.allclose(means[1], torch.full((3, 8, 8), 100 / 255)) and torch.allclose(means[2], torch.full((3, 8, 8), 0.5))
    comp = make_composites(images, torch.full((4, 3, 8, 8), 255, dtype=torch.uint8), 4, seed=3)
    dist = class_mean_distance_map(comp.images, labels[comp.id_rows], means)
    assert pixel_auroc(dist.numpy(), comp.masks.numpy()) == 1.0  # only the pasted pixels differ from their class mean
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))
    grad = energy_gradient_map(model, comp.images, torch.device("cpu"))
    assert grad.shape == (4, 8, 8) and bool((grad >= 0).all()) and float(grad.sum()) > 0


def test_evaluate_localization_on_the_tiny_run(pipeline: dict[str, Any], run_copy: Path) -> None:
    root = pipeline["root"]
    cfg = tiny_config(root)
    r = invoke("evaluate", "--localization", "--run", str(run_copy), "--dataset", cfg.data.id, "--ood", ",".join(cfg.data.ood),
               "--classifier", str(cfg.model.classifier), "--methods", "heatmap,msp,energy", "--ood-count", "12", "--device", "cpu", "-q",
               "--set", "run.num_threads=1", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    saved = json.loads((run_copy / "localization.json").read_text())
    assert saved["sets"].keys() == out["sets"].keys() == {"ood", "uniform-noise"}
    for s in saved["sets"].values():
        assert s["n"] == 12 and 0.05 < s["area"] < 0.55
        assert set(s["maps"]) == {"heatmap", "heatmap-smoothed", "energy-gradient", "class-mean-distance", "centre-prior"}
        assert all(0 <= v["pixel_auroc"] <= 1 and 0 <= v["aupro"] <= 1 for v in s["maps"].values())
        assert set(s["detection"]) == {"heatmap", "msp", "energy"}
    assert saved["mean"]["maps"]["heatmap"]["aupro"] == pytest.approx(
        np.mean([s["maps"]["heatmap"]["aupro"] for s in saved["sets"].values()]))
    assert (run_copy / "localization.png").stat().st_size > 1000
    table = invoke("evaluate", "--localization", "--run", str(run_copy), "--dataset", cfg.data.id, "--ood", "uniform-noise",
                   "--classifier", str(cfg.model.classifier), "--methods", "heatmap", "--ood-count", "12", "--device", "cpu", "-q",
                   "--set", "run.num_threads=1")
    assert table.exit_code == 0, table.output
    kept = sorted((run_copy / "earlier-results").glob("localization-*"))  # the first table and picture, not replaced
    assert [p.suffix for p in kept] == [".json", ".png"] and "kept as earlier-results/localization-" in table.stderr
    assert json.loads(kept[0].read_text())["sets"].keys() == {"ood", "uniform-noise"}
    assert "pixel AUROC" in table.stdout and "class-mean-distance" in table.stdout


def test_localization_refuses_a_benchmark_and_a_run_without_decoder_in_one_line(pipeline: dict[str, Any], tmp_path: Path) -> None:
    from hood import locks
    from hood.runs import create_run

    cfg = tiny_config(pipeline["root"], **{"run.out": str(tmp_path / "E")})
    create_run(cfg, "evaluate").mark_complete()  # the baselines' run: no decoder
    locks.release_all()
    given = ["--dataset", cfg.data.id, "--classifier", str(cfg.model.classifier), "--device", "cpu", "-q"]
    one_line_error(invoke("evaluate", "--localization", "--run", str(pipeline["run"]), "--benchmark", "paper-cifar10", *given),
                   2, "--localization", "drop --benchmark")
    one_line_error(invoke("evaluate", "--localization", "--run", str(tmp_path / "E"), "--ood", "uniform-noise", *given),
                   2, "is an evaluate run, not a train-decoder run", "--run RUN")


def test_localization_reads_the_latest_decoder_runs_settings_whatever_the_methods(pipeline: dict[str, Any], tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --run, --localization reads the newest train-decoder run, so its data and classifier settings apply
    also where the methods named (msp) need no decoder."""
    import shutil

    import hood.cli.runcfg as runcfg

    info = Path(shutil.copytree(pipeline["run"], tmp_path / "runs" / "r")) / "run.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "config_name": "id_wrn10_2"}))  # as the CLI names it
    cfg = tiny_config(pipeline["root"])
    read: list[str | None] = []
    real = runcfg.with_run_data
    monkeypatch.setattr(runcfg, "with_run_data", lambda c, run, *a: read.append(run) or real(c, run, *a))
    r = invoke("evaluate", "--localization", "--methods", "msp", "--dataset", cfg.data.id, "-a", "wrn10_2", "--ood", "uniform-noise",
               "--ood-count", "6", "--device", "cpu", "-q", "--set", f"run.runs_dir={tmp_path / 'runs'}", "--set", "run.num_threads=1")
    assert r.exit_code == 0, r.output
    assert read == [str(tmp_path / "runs" / "r")] and (tmp_path / "runs" / "r" / "localization.json").is_file()


@pytest.mark.parametrize("k", [1, 2])
def test_composite_outliers_target_the_id_image_they_were_made_of(k: int) -> None:
    from hood.engine.decoder_training import build_decoder_data
    from hood.engine.features import FeatureSet

    g = torch.Generator().manual_seed(0)
    id_images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8, generator=g)
    ood_images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=g)
    comp = make_composites(id_images, ood_images, 5, seed=2)
    n = 6 + 4 + 5
    feats = FeatureSet(torch.randn(n, 3, generator=g), torch.randn(n, 2, generator=g))
    data, proto = build_decoder_data(id_images, ood_images, feats, torch.device("cpu"), k, comp)
    assert data.n_id == 6 and data.n_ood == 9 and len(data.images) == n + (4 if k > 1 else 0)
    assert torch.equal(data.images[10:15], comp.images)
    assert torch.equal(data.target_idx[10:15], comp.id_rows)  # h = x_id - x inside the region, 0 outside
    assert torch.equal(data.images[data.target_idx[10:15]], id_images[comp.id_rows])
    if k > 1:  # the outliers' mean prototypes sit after the composites
        assert torch.equal(data.target_idx[6:10], torch.arange(15, 19))
    else:
        assert torch.equal(data.target_idx[6:10], proto)


def test_train_decoder_with_composites(pipeline: dict[str, Any], tmp_path: Path) -> None:
    from hood.jobs.train_decoder import train_decoder
    from hood.runs import create_run

    cfg = tiny_config(pipeline["root"], **{"run.out": str(tmp_path / "comp"), "decoder.composites": 8})
    run = train_decoder(cfg, None, create_run(cfg, "train-decoder"))
    assert run.info["status"] == "complete"
    assert "composites: 8" in run.file("config.yaml").read_text()


def test_gaussian_blur_keeps_mass_and_spreads_a_point() -> None:
    from hood.detectors.pixel_maps import gaussian_blur

    m = torch.zeros(1, 15, 15)
    m[0, 7, 7] = 1.0
    b = gaussian_blur(m, 2.0)
    assert float(b.sum()) == pytest.approx(1.0, abs=1e-5) and float(b[0, 7, 7]) < 0.1
    assert torch.allclose(b[0], b[0].T, atol=1e-7) and float(b[0, 7, 8]) > float(b[0, 7, 10]) > 0
    assert torch.equal(gaussian_blur(m, 0), m)


def test_localization_figure_puts_two_sets_to_a_row_on_one_scale() -> None:
    from hood.viz import GRID_SCALE, localization_figure

    rng = np.random.default_rng(0)

    def one(level: float) -> dict[str, np.ndarray]:
        masks = np.zeros((2, 8, 8), dtype=bool)
        masks[:, 2:6, 2:6] = True
        return {"images": rng.integers(0, 256, (2, 3, 8, 8), dtype=np.uint8), "masks": masks,
                "heatmaps": np.full((2, 8, 8), level, np.float32), "smoothed": np.full((2, 8, 8), level, np.float32)}

    two = localization_figure({"a": one(0.1), "b": one(0.1)}, vmax=0.5)
    three = localization_figure({"a": one(0.1), "b": one(0.1), "c": one(0.1)}, vmax=0.5)
    assert three.width == two.width and three.height > 1.9 * two.height  # the third set starts a second row
    assert two.width > 2 * 2 * 8 * GRID_SCALE  # two sets of two composites side by side
    # one scale for the figure, the brightest set's: set a's heatmap tile is darker beside a brighter set b
    from hood.viz import GRID_PAD

    y, x = 22 + 2 * (8 * GRID_SCALE + GRID_PAD) + 16, GRID_PAD + 16  # the middle of a's first heatmap tile
    alone = np.asarray(localization_figure({"a": one(0.1)}))[y, x].astype(int).sum()
    beside = np.asarray(localization_figure({"a": one(0.1), "b": one(0.8)}))[y, x].astype(int).sum()
    assert beside < alone


def test_centre_prior_marks_a_centred_region_and_misses_a_corner() -> None:
    from hood.detectors.pixel_maps import centre_prior_map

    m = centre_prior_map(2, 8, 8)
    assert m.shape == (2, 8, 8) and torch.equal(m[0], m[1]) and torch.equal(m[0], m[0].flip(0)) and torch.equal(m[0], m[0].T)
    centred, corner = np.zeros((1, 8, 8), bool), np.zeros((1, 8, 8), bool)
    centred[0, 2:6, 2:6], corner[0, :2, :2] = True, True
    assert pixel_auroc(m[:1].numpy(), centred) == pytest.approx(1.0) and pixel_auroc(m[:1].numpy(), corner) < 0.2

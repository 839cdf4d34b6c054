"""How much does validation on memorized ID images mislead? A diagnostic that chooses nothing.

Issue 7's validation ID rows are CIFAR-10 training images, which the shared classifiers were trained on.
This script asks what validation would have said with ID images the classifier never saw, using a seeded
1,000 of the 10,000 test images as a stand-in (the product cannot do this: test images must not choose; for
a classifier from ``hood pretrain``, ``data.val_id_source: classifier`` is the real thing). The test figures
are then taken on the other 9,000 test images only. It reads the per-image scores that ``bench/quality.sh``
runs store (``scores/heatmap``, ``scores/vim``, ``fits/heatmap+vim.pt``) and recombines ``heatmap+vim`` at
several partner weights, as the evaluation does (``z_heatmap + w z_vim``, statistics from the fit).

    python bench/unseen_id_check.py /tmp/runs/resnet18-*-fw_layers4_prototype_k5-seed*     # WS="1 2 3" for weights

Prints per weight: the validation figure (mean FPR95 of pool-val and uniform-val) with the memorized ID rows
and with the unseen stand-ins, and the test mean over tin32-test, mnist-test, textures10 and uniform noise.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from hood.metrics import ood_metrics
from hood.models.checkpoint import safe_load

VAL_SETS = ("val-tin32-pool-val", "val-uniform-noise-val")
TEST_SETS = ("tin32-test", "mnist-test", "textures10", "uniform-noise")
STAND_INS, STAND_IN_SEED = 1000, 12345


def components(run: Path, name: str, methods: tuple[str, ...] = ("heatmap", "vim")) -> list[np.ndarray]:
    """The stored scores of one set by ``methods`` (by default the two components of ``heatmap+vim``), as float64."""
    return [np.load(run / "scores" / m / f"{name}.npz")["scores"].astype(np.float64) for m in methods]


def _z(run: Path, name: str, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The standardized heatmap and ViM scores of one stored set (the fit's statistics, as the evaluation)."""
    h, v = components(run, name)
    return (h - mean[0]) / std[0], (v - mean[1]) / std[1]


def fpr95(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """FPR95 in %, ID positive, as the evaluation reports it."""
    return 100 * ood_metrics(id_scores, ood_scores)["fpr95"]


def scored_runs(paths: list[str]) -> list[Path]:
    """The stored runs among ``paths`` that hold test scores; exits with one line when there are none."""
    runs = [Path(p) for p in paths if (Path(p) / "scores" / "heatmap" / "id.npz").is_file()]
    if not runs:
        sys.exit("error: no run with test scores among the arguments (run bench/quality.sh with TEST=1 first)")
    return runs


def check(run: Path, weights: list[float]) -> dict[float, list[float]]:
    """Per weight: [validation (memorized ID), validation (unseen stand-ins), pool-val, uniform-val (unseen),
    test mean on the other 9,000, then each test set]."""
    fit = safe_load(run / "fits" / "heatmap+vim.pt")["state"]
    mean, std = fit["mean"].double().numpy(), fit["std"].double().numpy()
    z = {name: _z(run, name, mean, std) for name in ("id", "val-id", *VAL_SETS, *TEST_SETS)}  # read once, every weight
    perm = np.random.default_rng(STAND_IN_SEED).permutation(len(z["id"][0]))
    unseen, test = perm[:STAND_INS], perm[STAND_INS:]
    out = {}
    for w in weights:
        score = {name: zh + w * zv for name, (zh, zv) in z.items()}
        memorized = np.mean([fpr95(score["val-id"], score[s]) for s in VAL_SETS])
        val = [fpr95(score["id"][unseen], score[s]) for s in VAL_SETS]
        per_set = [fpr95(score["id"][test], score[s]) for s in TEST_SETS]
        out[w] = [memorized, float(np.mean(val)), *val, float(np.mean(per_set)), *per_set]
    return out


def main(paths: list[str]) -> None:
    runs = scored_runs(paths)
    weights = [float(w) for w in os.environ.get("WS", "1 1.5 2 3 5 8").split()]
    table = [check(r, weights) for r in runs]
    print(f"{len(runs)} runs; validation = mean FPR95 of pool-val and uniform-val; test = mean of the four sets on 9,000 ID")
    print("| w | validation, memorized ID | validation, unseen ID (pool / uniform) | per seed, unseen | test (tin32 / MNIST / textures / uniform) |")
    print("| --- | --- | --- | --- | --- |")
    for w in weights:
        a = np.array([t[w] for t in table])
        m = a.mean(axis=0)
        seeds = " ".join(f"{v:.2f}" for v in a[:, 1])
        print(f"| {w:g} | {m[0]:.2f} | {m[1]:.2f} ({m[2]:.1f} / {m[3]:.1f}) | {seeds} | "
              f"{m[4]:.2f} ({m[5]:.1f} / {m[6]:.1f} / {m[7]:.1f} / {m[8]:.1f}) |")


if __name__ == "__main__":
    main(sys.argv[1:])

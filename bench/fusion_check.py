"""Is a weighted z-sum the right way to join the heatmap and ViM? A screen on stored scores that changes nothing.

``heatmap+vim`` adds the two scores standardized by their ID mean and spread, with a partner weight chosen
on validation data. The heatmap's ID scores are heavily skewed (median near its floor, a long upper tail), so
a spread-based scale mis-weights exactly the tail that sets FPR95. The alternative screened here is the
textbook way to join two detectors calibrated on ID data: turn each score into its ID tail probability p
(empirical below the ID fit's (1 - t) quantile, an exponential tail fitted to the excesses above it, so
scores beyond every fit image still rank) and add -log p (Fisher's method). It has no weight to choose;
the product has it as ``evaluate.fusion: tail`` (this script uses the same function).

Both rules get the same ID fit: the even rows of each run's validation ID set; the odd rows are the
validation ID, the validation figure is the mean FPR95 of pool-val and uniform-val as in issue 7's rule,
and the test figures (tin32-test, mnist-test, textures10, uniform noise) are a record that chooses nothing.
It reads the per-image scores that ``bench/quality.sh`` runs store (``scores/heatmap``, ``scores/vim``).

With ``PARTNERS="vim mahalanobis"`` the heatmap has two partners, as ``heatmap+vim+mahalanobis`` (each
partner's term counts ``w`` times; the tail rule adds all three).

    python bench/fusion_check.py /tmp/runs/resnet18-*-cifar10_resnet18_cpu-seed*    # WS="1 2 3" TAILS="0.05 0.2"
    STAND_INS=1 python bench/fusion_check.py ...    # validation against unseen_id_check's unseen ID stand-ins
    PARTNERS="vim mahalanobis" python bench/fusion_check.py ...
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hood.detectors.combined import tail_nlp  # the product's rule (evaluate.fusion: tail)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from unseen_id_check import STAND_IN_SEED, STAND_INS, TEST_SETS, VAL_SETS, components, fpr95, scored_runs  # noqa: E402 - its sets, stand-ins and score reading

Rule = Callable[[list[np.ndarray]], np.ndarray]  # the components of one set (heatmap first) -> its joint score


def rules(fit: list[np.ndarray], weights: list[float], tails: list[float]) -> dict[str, Rule]:
    """Every rule screened, each fitted on the same ID rows (one array per component, the heatmap's first)."""
    mean, std = [f.mean() for f in fit], [max(f.std(), 1e-12) for f in fit]

    def zsum(c: list[np.ndarray], w: float) -> np.ndarray:
        z = [(x - m) / s for x, m, s in zip(c, mean, std, strict=True)]
        return z[0] + w * sum(z[1:])

    out: dict[str, Rule] = {}
    for w in weights:
        out[f"z-sum, w {w:g}"] = lambda c, w=w: zsum(c, w)
    for t in tails:
        out[f"tail-probability, t {t:g}"] = lambda c, t=t: sum(tail_nlp(f, x, t) for f, x in zip(fit, c, strict=True))
    return out


def check(run: Path, weights: list[float], tails: list[float], stand_ins: bool = False,
          partners: tuple[str, ...] = ("vim",)) -> dict[str, list[float]]:
    """Per rule: [validation mean, test mean, then each test set]. With ``stand_ins`` the fit takes every
    validation ID row and validation ID is ``unseen_id_check``'s 1,000 seeded test images (the test figures
    then use the other 9,000): what a split of ID images the classifier never saw would say."""
    comp = {name: components(run, name, ("heatmap", *partners)) for name in ("id", "val-id", *VAL_SETS, *TEST_SETS)}
    if stand_ins:
        perm = np.random.default_rng(STAND_IN_SEED).permutation(len(comp["id"][0]))
        fit = comp["val-id"]
        val_id, test_id = ([c[rows] for c in comp["id"]] for rows in (perm[:STAND_INS], perm[STAND_INS:]))
    else:
        fit, val_id, test_id = [c[0::2] for c in comp["val-id"]], [c[1::2] for c in comp["val-id"]], comp["id"]
    out = {}
    for name, rule in rules(fit, weights, tails).items():
        val = np.mean([fpr95(rule(val_id), rule(comp[s])) for s in VAL_SETS])
        test = [fpr95(rule(test_id), rule(comp[s])) for s in TEST_SETS]
        out[name] = [float(val), float(np.mean(test)), *test]
    return out


def main(paths: list[str]) -> None:
    runs = scored_runs(paths)
    weights = [float(w) for w in os.environ.get("WS", "1 1.5 2 3").split()]
    tails = [float(t) for t in os.environ.get("TAILS", "0.02 0.05 0.1 0.2").split()]
    stand_ins = os.environ.get("STAND_INS", "0") == "1"
    partners = tuple(os.environ.get("PARTNERS", "vim").split())
    table = [check(r, weights, tails, stand_ins, partners) for r in runs]
    split = ("fit = every validation ID row, validation ID = 1,000 unseen test stand-ins, test on the other 9,000" if stand_ins
             else "fit = even validation ID rows, validation ID = odd rows")
    print(f"{len(runs)} runs; heatmap+{'+'.join(partners)}; {split}; validation = mean FPR95 of pool-val and uniform-val")
    print("| rule | validation | test mean (tin32 / MNIST / textures / uniform) | test per seed |")
    print("| --- | --- | --- | --- |")
    for name in table[0]:
        a = np.array([t[name] for t in table])
        m = a.mean(axis=0)
        seeds = " ".join(f"{v:.1f}" for v in a[:, 1])
        print(f"| {name} | {m[0]:.2f} | {m[1]:.2f} ({m[2]:.1f} / {m[3]:.1f} / {m[4]:.1f} / {m[5]:.1f}) | {seeds} |")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Which third partner to add to heatmap+vim, screened on a run's validation scores (never a test set).

Reads ``scores/<method>/val-*.npz`` of one or more evaluated runs (``hood evaluate --validation --methods
heatmap,vim,<candidates>``) and prints, per candidate and weight, the mean validation FPR95 / AUROC of
``z_heatmap + vim_weight z_vim + w z_candidate``. Each score is standardized on the validation ID scores here,
which differs from the shipped combinations' held-out ID training rows only by a shift and a spread: enough to
rank partners, and the chosen one is then evaluated by hood itself.

    python research/partner_screen.py RUN [RUN ...] [--candidates scale,adascale,nac,nci,rmds] [--weights 0.25,0.5,1,2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hood.metrics import ood_metrics


def load(run: Path, method: str) -> dict[str, np.ndarray]:
    folder = run / "scores" / method
    return {p.stem[4:]: np.load(p)["scores"] for p in sorted(folder.glob("val-*.npz"))}


def z(scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    mu, sd = scores["id"].mean(), scores["id"].std() or 1.0
    return {k: (v - mu) / sd for k, v in scores.items()}


def mean_of(combined: dict[str, np.ndarray]) -> tuple[float, float]:
    per = [ood_metrics(combined["id"], v) for k, v in combined.items() if k != "id"]
    return float(np.mean([m["fpr95"] for m in per])) * 100, float(np.mean([m["auroc"] for m in per])) * 100


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--candidates", default="scale,adascale,nac,nci,rmds")
    ap.add_argument("--weights", default="0.25,0.5,1,2")
    ap.add_argument("--vim-weight", type=float, default=1.0)
    a = ap.parse_args()
    weights = [float(w) for w in a.weights.split(",")]
    rows: dict[str, list[tuple[float, float]]] = {}
    for run in a.runs:
        base = {m: z(load(run, m)) for m in ("heatmap", "vim")}
        sets = list(base["heatmap"])
        two = {s: base["heatmap"][s] + a.vim_weight * base["vim"][s] for s in sets}
        rows.setdefault("heatmap+vim", []).append(mean_of(two))
        for c in a.candidates.split(","):
            part = load(run, c)
            if set(part) != set(sets):
                print(f"{run}: no validation scores of {c}; skipped")
                continue
            zc = z(part)
            rows.setdefault(c, []).append(mean_of(zc))
            for w in weights:
                rows.setdefault(f"heatmap+vim+{c} w={w:g}", []).append(mean_of({s: two[s] + w * zc[s] for s in sets}))
    print(f"{'combination':34s} {'FPR95':>7s} {'AUROC':>7s}   (mean over validation sets and runs)")
    for name, vals in rows.items():
        f, r = np.mean([v[0] for v in vals]), np.mean([v[1] for v in vals])
        print(f"{name:34s} {f:7.2f} {r:7.2f}")


if __name__ == "__main__":
    main()

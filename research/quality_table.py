"""Mean and spread over seeds of ``results.json`` (or ``validation.json``) files: FPR95 / AUROC (%) per OOD
set and method, their mean over named sets, and the target read off them.

    python research/quality_table.py [--mean-sets a,b,c] runs/quality/*-seed*/results.json

The mean column is over ``--mean-sets`` (default: tin32-test, mnist-test, textures10 and uniform noise
where all four are present, else every set), averaged per seed; the other sets are shown beside it.

The target, on the test sets, per heatmap method: mean FPR95 over tin32-test, mnist-test, textures10 and
uniform noise <= 18% with mean AUROC >= 96%; that mean FPR95 at least 5 points below every baseline's; on
no one of those sets more than 3 points FPR95 behind that set's best baseline; and (where the runs kept
their scores) a median tin32-test score at least 3 times the median ID test score. Where the four sets are
not all present, or no heatmap method was evaluated, the target lines are left out.

Below the table, where the runs kept their scores (``scores/<method>/<set>.npz`` beside the results): per
method, the median score of the ID test images and of tin32-test, and their ratio; then the runs whose
decoder has stuck heatmap pixels (``stuck_pixels`` in their run.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

TARGET_SETS = ("tin32-test", "mnist-test", "textures10", "uniform-noise")
TARGET_FPR, TARGET_AUROC = 0.18, 0.96
TARGET_MARGIN = 5.0  # FPR95 points below the best baseline's mean
TARGET_BEHIND = 3.0  # FPR95 points a single set may trail that set's best baseline by
HEATMAP = "heatmap"  # the paper's score: the heatmap's own brightness
TARGET_RATIO = 3.0  # median heatmap score on tin32-test over that on the ID test images
RATIO_SET = "tin32-test"  # the near-OOD test set whose median score is set against ID's


def _per_seed(runs: list[dict], method: str, sets: tuple[str, ...], key: str) -> np.ndarray:
    """Per seed, the mean of ``key`` over ``sets`` for ``method``."""
    return np.array([np.mean([r["results"][method][s][key] for s in sets]) for r in runs])


def _mean(runs: list[dict], method: str, ood_set: str, key: str) -> float:
    """The seed mean of ``key`` for one method on one set."""
    return float(np.mean([r["results"][method][ood_set][key] for r in runs]))


def _is_baseline(method: str) -> bool:
    return not method.startswith(HEATMAP)


def _is_combination(method: str) -> bool:
    """A heatmap method other than the paper's score: a sum of z-scores (hood.detectors.combined)."""
    return method.startswith(HEATMAP) and method != HEATMAP


def _cell(f: np.ndarray, a: np.ndarray) -> str:
    return f"{f.mean():5.1f}±{f.std():3.1f} / {a.mean():5.1f}±{a.std():3.1f}"


def _median(path: Path) -> float | None:
    if not path.is_file():
        return None
    with np.load(path) as f:
        return float(np.median(f["scores"]))


def median_ratios(paths: list[Path], methods: list[str], ood_set: str = RATIO_SET) -> dict[str, tuple[float, float, float | None]]:
    """Per method, the seed means of the median ID test score and the median ``ood_set`` score, and their
    ratio (``ood_set`` / ID; None where the ID median is not positive, as for scores that are log-likelihoods,
    and for the combinations, sums of z-scores centred on ID data whose ratio means nothing); methods without
    both score files in every run are left out."""
    out: dict[str, tuple[float, float, float | None]] = {}
    for m in methods:
        pairs = [(_median(p.parent / "scores" / m / "id.npz"), _median(p.parent / "scores" / m / f"{ood_set}.npz")) for p in paths]
        if not pairs or any(i is None or o is None for i, o in pairs):
            continue
        id_med = float(np.mean([i for i, _ in pairs]))
        ood_med = float(np.mean([o for _, o in pairs]))
        out[m] = (id_med, ood_med, ood_med / id_med if id_med > 0 and not _is_combination(m) else None)
    return out


def _load(path: Path) -> dict:
    """One results file; one that an evaluation has not finished writing is named, not tabled half-read."""
    try:
        run = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        sys.exit(f"cannot read {path}: {e}")
    # "running": an evaluation is writing it (or was killed); what results it holds may be the previous ones
    if not isinstance(run, dict) or "results" not in run or run.get("state") == "running":
        state = run.get("state", "no results") if isinstance(run, dict) else "no results"
        sys.exit(f"{path} holds no finished evaluation (state: {state}): wait for its evaluate to end, or rerun it")
    return run


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mean-sets", help="comma-separated sets the mean column averages (default: see above)")
    parser.add_argument("files", nargs="*")
    args = parser.parse_args(argv)
    paths = [Path(p) for p in args.files]
    runs = [_load(p) for p in paths]
    if not runs:
        sys.exit("no results.json given")
    # what every run evaluated (runs evaluated with different --methods or --ood still combine)
    methods = [m for m in runs[0]["results"] if all(m in r["results"] for r in runs)]
    if not methods:
        sys.exit("the runs have no method in common")
    sets = [s for s in runs[0]["results"][methods[0]]
            if s != "mean" and all(s in r["results"][m] for r in runs for m in methods)]
    have_target = all(s in sets for s in TARGET_SETS)
    if args.mean_sets:
        mean_sets = tuple(s.strip() for s in args.mean_sets.split(",") if s.strip())
        missing = [s for s in mean_sets if s not in sets]
        if missing:
            sys.exit(f"--mean-sets names {', '.join(missing)}, which the runs did not all score (they scored {', '.join(sets)})")
    else:
        mean_sets = TARGET_SETS if have_target else tuple(sets)
    draw = runs[0].get("draw")
    drawn = f"; {draw['mode']} draw, seed {draw['seed']}" if draw else ""
    print(f"{len(runs)} seed(s); ID {runs[0]['id_dataset']} n={runs[0]['n_id']}{drawn}; FPR95 / AUROC in %, mean ± std over seeds;"
          f" {runs[0].get('caption', '')}")
    print(f"mean over: {', '.join(mean_sets)}")
    head = [*sets, f"mean ({len(mean_sets)} sets)"]
    width = max(15, *(len(m) + 1 for m in methods))
    print(f"{'method':{width}s}" + "".join(f"{s:>24s}" for s in head))
    for m in methods:
        cells = [_cell(np.array([r["results"][m][s]["fpr95"] for r in runs]) * 100,
                       np.array([r["results"][m][s]["auroc"] for r in runs]) * 100) for s in sets]
        cells.append(_cell(_per_seed(runs, m, mean_sets, "fpr95") * 100, _per_seed(runs, m, mean_sets, "auroc") * 100))
        print(f"{m:{width}s}" + "".join(f"{c:>24s}" for c in cells))
    ratios = median_ratios(paths, methods) if RATIO_SET in sets else {}
    if ratios:
        print(f"\nmedian score, ID test vs {RATIO_SET} (seed means; ratio {RATIO_SET} / ID):")
        for m, (i, o, ratio) in ratios.items():
            print(f"  {m:{width}s} {i:12.4g} {o:12.4g}   {'n/a' if ratio is None else f'{ratio:.3g}x'}")
    stuck = stuck_runs(paths)
    if stuck:
        print("\nstuck heatmap pixels (docs/method.md#stuck-pixels): "
              + "; ".join(f"{name}: {n} of {of}" for name, n, of in stuck))
    if have_target and any(not _is_baseline(m) for m in methods):
        _target(runs, methods, ratios)


def stuck_runs(paths: list[Path]) -> list[tuple[str, int, int]]:
    """``(run, pixels, of)`` for each run whose decoder training left heatmap pixels stuck (its run.json)."""
    found = []
    for p in paths:
        info = p.parent / "run.json"
        stuck = (json.loads(info.read_text()).get("stuck_pixels") or {}) if info.is_file() else {}
        if stuck.get("pixels"):
            found.append((p.parent.name, int(stuck["pixels"]), int(stuck["of"])))
    return found


def _target(runs: list[dict], methods: list[str], ratios: dict[str, tuple[float, float, float | None]]) -> None:
    baselines = [m for m in methods if _is_baseline(m)]
    print(f"\ntarget over {', '.join(TARGET_SETS)} (seed means): mean FPR95 <= {TARGET_FPR:.0%} and mean AUROC >= "
          f"{TARGET_AUROC:.0%}; mean FPR95 at least {TARGET_MARGIN:.0f} points below every baseline's "
          f"({', '.join(baselines)}); on no set more than {TARGET_BEHIND:.0f} points behind that set's best baseline; "
          f"median {RATIO_SET} / ID test score >= {TARGET_RATIO:g}:")
    for m in (m for m in methods if not _is_baseline(m)):
        f, a = _per_seed(runs, m, TARGET_SETS, "fpr95").mean() * 100, _per_seed(runs, m, TARGET_SETS, "auroc").mean() * 100
        misses = []
        if f > TARGET_FPR * 100:
            misses.append(f"mean FPR95 {f:.1f} > {TARGET_FPR * 100:.0f}")
        if a < TARGET_AUROC * 100:
            misses.append(f"mean AUROC {a:.1f} < {TARGET_AUROC * 100:.0f}")
        if baselines:
            best = min(baselines, key=lambda b: _per_seed(runs, b, TARGET_SETS, "fpr95").mean())
            theirs = _per_seed(runs, best, TARGET_SETS, "fpr95").mean() * 100
            if theirs - f < TARGET_MARGIN:
                misses.append(f"{theirs - f:.1f} points below the best baseline's mean ({best} {theirs:.1f})")
        for s in TARGET_SETS:
            mine = _mean(runs, m, s, "fpr95") * 100
            best_s = min(baselines, key=lambda b, s=s: _mean(runs, b, s, "fpr95"), default=None)
            theirs_s = _mean(runs, best_s, s, "fpr95") * 100 if best_s is not None else mine
            if mine - theirs_s > TARGET_BEHIND:
                misses.append(f"{s} {mine:.1f} vs {best_s} {theirs_s:.1f}")
        ratio = ratios.get(HEATMAP, (0.0, 0.0, None))[2]  # the aim is on the heatmap itself, which they all read
        if ratio is not None and ratio < TARGET_RATIO:
            misses.append(f"median ratio {ratio:.2f}")
        print(f"  {m:15s} {f:5.1f} / {a:5.1f}  {'MET' if not misses else 'missed: ' + '; '.join(misses)}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""The table of `bench/gpu.sh`: GPU speed targets 5-7 from the runs' own records.

Reads ``OUT/timings.jsonl`` (wall seconds and exit code of every step) and the run directories under
``OUT/runs`` (``epoch_seconds``, ``phase_seconds``, accuracy, losses, evaluation results). Prints Markdown;
exits 1 when a target that was measured is missed, 2 when one could not be measured.

    python research/gpu_table.py bench-gpu-out [RUNS_DIR]   # RUNS_DIR defaults to bench-gpu-out/runs
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

PRETRAIN_S_PER_EPOCH = 1.5  # target 5
DECODER_TOTAL_S = 120.0  # target 6


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def steady(seconds: list[float]) -> float | None:
    """Median epoch time without the first epoch (cuDNN's algorithm search and allocator warm-up)."""
    rest = seconds[1:] or seconds
    return statistics.median(rest) if rest else None


def yes(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def main(out: Path, runs: Path) -> int:
    steps: dict[str, dict[str, Any]] = {}
    for line in (out / "timings.jsonl").read_text().splitlines():
        r = json.loads(line)
        steps[r["step"]] = r
    pre, dec, eager = (read_json(runs / n / "run.json") for n in ("pretrain", "decoder", "decoder-eager"))
    print((out / "machine.txt").read_text().strip().replace("\n", "  \n"))
    print("\n| target | measured | goal | met |\n| --- | --- | --- | --- |")
    missed, unmeasured = False, False

    epoch_s = steady(pre.get("epoch_seconds", []))
    try:  # graphs or eager steps: gpu.sh replays graphs only after tests/test_cuda.py passed on the machine
        graph = {"true": True, "false": False}.get((out / "pretrain_graphs").read_text().strip(), "?")
    except OSError:
        graph = "?"
    steps_kind = {True: "CUDA graphs", False: "eager steps"}.get(graph, "steps unknown")
    if epoch_s is None:
        unmeasured = True
        print(f"| 5 pretrain ResNet18 s/epoch | not measured (pretrain rc {steps.get('pretrain', {}).get('rc')}) | <= {PRETRAIN_S_PER_EPOCH} | - |")
    else:
        ok = epoch_s <= PRETRAIN_S_PER_EPOCH
        missed |= not ok
        first = pre["epoch_seconds"][0]
        print(f"| 5 pretrain ResNet18 CIFAR-10, s/epoch ({steps_kind}; median of epochs 2-{len(pre['epoch_seconds'])}; epoch 1: {first:.2f}) "
              f"| {epoch_s:.3f} | <= {PRETRAIN_S_PER_EPOCH} | {yes(ok)} |")
    if pre.get("epoch_seconds") and steps.get("pretrain", {}).get("seconds"):
        n, wall = len(pre["epoch_seconds"]), steps["pretrain"]["seconds"]
        print(f"| 5 ... whole pretrain command / epochs (start-up, validation, checkpoints, test included; "
              f"sum of epoch times {sum(pre['epoch_seconds']):.1f} s) | {wall / n:.3f} | - | - |")
    pre_eager = steady(read_json(runs / "pretrain-eager" / "run.json").get("epoch_seconds", []))
    if pre_eager is not None:
        print(f"| 5' the same with eager steps (HOOD_CUDA_GRAPHS=0; main run graphs {graph}), s/epoch "
              f"| {pre_eager:.3f} | - | - |")
    if pre.get("test_acc") is None and pre.get("history"):
        last = pre["history"][-1]
        print(f"| 5 (cut short after epoch {last['epoch']}) validation accuracy then | {last['val_acc'] * 100:.2f}% | - | - |")
    if pre.get("test_acc") is not None:
        print(f"| 5 accuracy of the recipe (best val epoch {pre.get('best_epoch')} of {pre.get('epochs_done')}), CIFAR-10 test "
              f"| {pre['test_acc'] * 100:.2f}% | ~95% (the paper's recipe) | - |")

    if dec.get("epoch_seconds"):
        es = dec["epoch_seconds"]
        print(f"| 6 decoder s/epoch (median of epochs 2-{len(es)}; epoch 1: {es[0]:.2f}) | {steady(es):.3f} | - | - |")
    if "train_decoder" in steps and steps["train_decoder"]["rc"] == 0:
        total = steps["train_decoder"]["seconds"]
        ok = total <= DECODER_TOTAL_S
        missed |= not ok
        ph = dec.get("phase_seconds", {})
        split = ", ".join(f"{k} {v:.1f}" for k, v in ph.items())
        n_ood = len(read_json(runs / "decoder" / "ood_samples.json").get("indices", []))
        print(f"| 6 train-decoder {dec.get('epochs_done')} epochs, {n_ood} outliers, whole command, s "
              f"({split}; epoch {steady(dec.get('epoch_seconds', [])) or float('nan'):.3f} s) | {total:.1f} | <= {DECODER_TOTAL_S:.0f} | {yes(ok)} |")
    else:
        unmeasured = True
        print(f"| 6 train-decoder | not measured (rc {steps.get('train_decoder', {}).get('rc')}) | <= {DECODER_TOTAL_S:.0f} | - |")

    e_epoch = steady(eager.get("epoch_seconds", []))
    if e_epoch is not None:
        g_losses, e_losses = dec.get("losses", []), eager.get("losses", [])
        common = min(len(e_losses), len(g_losses))
        diff = max((abs(a - b) / abs(a) for a, b in zip(e_losses[:common], g_losses[:common], strict=True)), default=float("nan"))
        rc = steps.get("train_decoder_eager", {})
        whole = f"{rc['seconds']:.1f} s whole command" if rc.get("rc") == 0 else f"rc {rc.get('rc')}, {len(eager['epoch_seconds'])} epochs"
        print(f"| 6' the same with eager steps (HOOD_CUDA_GRAPHS=0): s/epoch ({whole}; largest relative loss "
              f"difference to the graphed run over {common} epochs {diff:.2e}) | {e_epoch:.3f} | - | - |")

    parts = ["pretrain", "train_decoder", "evaluate"]
    if all(steps.get(p, {}).get("rc") == 0 for p in parts):
        total = sum(steps[p]["seconds"] for p in parts)
        print(f"| 7 whole pipeline end to end (pretrain {pre.get('epochs_done')} epochs + train-decoder + evaluate), s "
              f"| {total:.0f} | - | - |")
    else:
        unmeasured = True
        print("| 7 whole pipeline | not complete: " + ", ".join(f"{p} rc {steps.get(p, {}).get('rc')}" for p in parts) + " | - | - |")

    results = sorted((runs / "decoder").rglob("results.json"))
    if results:
        res = read_json(results[-1]).get("results", {})
        print("\nDetection (FPR95 / AUROC %, mean over the OOD sets; ID = CIFAR-10 test):\n")
        print("| method | " + " | ".join(k for k in next(iter(res.values()), {}) if k != "mean") + " | mean |")
        print("| --- " * (len(next(iter(res.values()), {})) + 1) + "|")
        for method, per_set in res.items():
            cells = [f"{m['fpr95'] * 100:.1f} / {m['auroc'] * 100:.1f}" for name, m in per_set.items() if name != "mean"]
            mean = per_set.get("mean", {})
            print(f"| {method} | " + " | ".join(cells) + f" | {mean.get('fpr95', float('nan')) * 100:.1f} / {mean.get('auroc', float('nan')) * 100:.1f} |")

    print("\nsteps (wall s, exit code): " + ", ".join(f"{k} {v['seconds']} ({v['rc']})" for k, v in steps.items()))
    return 2 if unmeasured else 1 if missed else 0


if __name__ == "__main__":
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "bench-gpu-out")
    sys.exit(main(out_dir, Path(sys.argv[2]) if len(sys.argv) > 2 else out_dir / "runs"))

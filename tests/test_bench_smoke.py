"""The benchmark scripts still run and check what they claim, at toy sizes (correctness only: no timing
is asserted here; the targets are checked by ``make bench``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / args[0]), *args[1:], "--threads", "1"], capture_output=True, text=True, timeout=300)


def test_prototype_bench_agrees_with_the_public_loop() -> None:
    # target 0: only the agreement of the two searches on every timed outlier can fail
    proc = _run("bench_prototypes.py", "--n-ood", "120", "--n-id", "600", "--dim", "32", "--loop-subset", "60", "--target", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "same indices on the 60 timed outliers: 60/60" in proc.stdout
    assert "RESULT prototype search speed-up" in proc.stdout


@pytest.mark.parametrize("script", ["bench_decoder_epoch.py", "bench_evaluate.py"])
def test_bench_scripts_run(script: str) -> None:
    args = ["--n", "40", "--rounds", "1"] if script == "bench_decoder_epoch.py" else [
        "speed", "--arch", "wrn10_2", "--n-train", "20", "--n-test", "20", "--rounds", "1"]
    proc = _run(script, *args, "--target" if script == "bench_decoder_epoch.py" else "--target-speed", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "RESULT" in proc.stdout


def test_fit_memory_bench_runs_both_sides() -> None:
    proc = _run("bench_evaluate.py", "fit-memory", "--arch", "wrn10_2", "--n-train", "40", "--n-test", "20",
                "--ood-size", "10", "--rounds", "1", "--target-growth", "100")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "ID train 40 (fit included): peak RSS" in proc.stdout and "ID train 120 (fit included): peak RSS" in proc.stdout
    assert "RESULT evaluate peak RSS, ID train 120 / 40" in proc.stdout


def _score_run(folder: Path, sets: dict[str, tuple[float, int]]) -> Path:
    """A stored ``bench/quality.sh`` run with synthetic heatmap, ViM and Mahalanobis scores: N(loc, 1) of n
    images per set."""
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    run = folder / "run-seed0"
    for method in ("heatmap", "vim", "mahalanobis"):
        (run / "scores" / method).mkdir(parents=True)
        for name, (loc, n) in sets.items():
            np.savez(run / "scores" / method / f"{name}.npz", scores=rng.normal(loc, 1.0, n))
    (run / "fits").mkdir()
    torch.save({"state": {"mean": torch.zeros(2), "std": torch.ones(2)}}, run / "fits" / "heatmap+vim.pt")
    return run


def test_unseen_id_check_separates_memorized_from_unseen_id(tmp_path: Path) -> None:
    """A run whose validation ID rows score lower than its test ID images (what memorization does): the
    validation figure against the test stand-ins must come out higher than against the memorized rows."""
    run = _score_run(tmp_path, {"id": (0.0, 10000), "val-id": (-2.0, 1000), "val-tin32-pool-val": (2.0, 500),
                                "val-uniform-noise-val": (1.0, 500), "tin32-test": (2.5, 300), "mnist-test": (3.0, 300),
                                "textures10": (2.0, 300), "uniform-noise": (4.0, 300)})
    proc = subprocess.run([sys.executable, str(BENCH / "unseen_id_check.py"), str(run)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "WS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| 1 |"))
    memorized, unseen = float(row.split("|")[2]), float(row.split("|")[3].split("(")[0])
    assert memorized < 10 < unseen  # ID 2 sigma lower on the memorized rows: nearly nothing passes there
    empty = subprocess.run([sys.executable, str(BENCH / "unseen_id_check.py"), str(tmp_path)], capture_output=True, text=True)
    assert empty.returncode != 0 and "no run with test scores" in empty.stderr


def test_fusion_check_runs(tmp_path: Path) -> None:
    far = {"id": (0.0, 4000), "val-id": (0.0, 1000), "val-tin32-pool-val": (5.0, 500), "val-uniform-noise-val": (5.0, 500),
           "tin32-test": (5.0, 300), "mnist-test": (5.0, 300), "textures10": (5.0, 300), "uniform-noise": (5.0, 300)}
    run = _score_run(tmp_path, far)
    for stand_ins, partners in (("0", "vim"), ("1", "vim"), ("0", "vim mahalanobis")):
        # validation ID: half the validation rows, or unseen_id_check's test stand-ins; one partner or two
        proc = subprocess.run([sys.executable, str(BENCH / "fusion_check.py"), str(run)], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "WS": "1 2", "TAILS": "0.05", "STAND_INS": stand_ins, "PARTNERS": partners})
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert ("stand-ins" in proc.stdout) == (stand_ins == "1")
        assert f"heatmap+{partners.replace(' ', '+')};" in proc.stdout
        rows = [line for line in proc.stdout.splitlines() if line.startswith(("| z-sum", "| tail-probability"))]
        assert len(rows) == 3
        for row in rows:  # OOD 5 sigma out on both components: every rule accepts almost none of it
            assert float(row.split("|")[2]) < 1 and float(row.split("|")[3].split("(")[0]) < 1


def test_api_bench_runs_both_sides() -> None:
    proc = _run("bench_api.py", "--n", "32", "--batch", "16", "--rounds", "1", "--target", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "RESULT API predict throughput / bare forward" in proc.stdout

"""The benchmark scripts still run and check what they claim, at toy sizes (correctness only: no timing
is asserted here; the targets are checked by ``make bench``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / args[0]), *args[1:], "--threads", "1"], capture_output=True, text=True, timeout=300)


def test_prototype_bench_agrees_with_the_public_loop() -> None:
    # target 0: only the agreement of the two searches on every timed outlier can fail
    proc = _run("prototype_search.py", "--n-ood", "120", "--n-id", "600", "--dim", "32", "--loop-subset", "60", "--target", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "same indices on the 60 timed outliers: 60/60" in proc.stdout
    assert "RESULT prototype search speed-up" in proc.stdout
    assert f"path: {_path()}" in proc.stdout  # which CPU path ran, beside its figure


def _path() -> str:
    from hood.engine.runtime import cpu_has_bf16

    return "bf16" if cpu_has_bf16() else "float32"


def test_the_targets_are_those_of_the_cpu_path_that_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """An AVX2 CPU (no native bf16) runs the float32 path, whose targets are its own; --target overrides."""
    monkeypatch.syspath_prepend(str(BENCH))
    import common

    import hood.engine.runtime as runtime

    targets = {"bf16": 50.0, "float32": 30.0}
    for native, want in ((False, 30.0), (True, 50.0)):
        monkeypatch.setattr(runtime, "cpu_has_bf16", lambda native=native: native)
        target, said = common.path_target(targets, None)
        assert target == want and said.startswith(f"path: {'bf16' if native else 'float32'} (target >= {want:g}x")
    assert common.path_target(targets, 0.0)[0] == 0.0


@pytest.mark.parametrize("script", ["decoder_epoch.py", "evaluate_cost.py"])
def test_bench_scripts_run(script: str) -> None:
    args = ["--n", "40", "--rounds", "1"] if script == "decoder_epoch.py" else [
        "speed", "--arch", "wrn10_2", "--n-train", "20", "--n-test", "20", "--rounds", "1"]
    proc = _run(script, *args, "--target" if script == "decoder_epoch.py" else "--target-speed", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "RESULT" in proc.stdout
    assert script != "decoder_epoch.py" or f"path: {_path()}" in proc.stdout


def test_fit_memory_bench_runs_both_sides() -> None:
    proc = _run("evaluate_cost.py", "fit-memory", "--arch", "wrn10_2", "--n-train", "40", "--n-test", "20",
                "--ood-size", "10", "--rounds", "1", "--target-growth", "100")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "ID train 40 (fit included): peak RSS" in proc.stdout and "ID train 120 (fit included): peak RSS" in proc.stdout
    assert "RESULT evaluate peak RSS, ID train 120 / 40" in proc.stdout


def test_api_bench_runs_both_sides() -> None:
    proc = _run("bench_api.py", "--n", "32", "--batch", "16", "--rounds", "1", "--target", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "RESULT API predict throughput / bare forward" in proc.stdout


def test_nac_bench_measures_time_and_memory() -> None:
    proc = _run("nac_cost.py", "--arch", "wrn10_2", "--n", "8", "--n-train", "16", "--n-fit", "16", "--rounds", "1")
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr[-2000:]  # toy sizes: no target holds
    for line in ("NAC scoring time per image / ViM's", "NAC fit + scoring / ViM's fit at 50k", "NAC peak RSS, 4x the images"):
        assert f"RESULT {line}" in proc.stdout, proc.stdout

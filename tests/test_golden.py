"""The golden run: one fixed pipeline (pretrain, train-decoder, evaluate on the test sets and on validation) whose decoder
weights and every method's scores are recorded in ``tests/golden/pipeline.npz``; the same commands must give the
same numbers (within 1e-6) after any change that means to keep behaviour.

Regenerate it, only when a change is *meant* to alter results, with ``HOOD_WRITE_GOLDEN=1 pytest
tests/test_golden.py``. Decoder training runs in float32 here (a CPU with native bf16 would otherwise train in
bf16); a CPU of another vector width (AVX2 against AVX-512) rounds float32 sums differently, so there the
figures are compared at 1e-4.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_flat_folder, write_image_folder
from typer.testing import CliRunner

from hood.cli.app import app

GOLDEN = Path(__file__).parent / "golden" / "pipeline.npz"
runner = CliRunner()


def _invoke(*args: str) -> None:
    # one thread: a float32 sum's order depends on the thread count, which other tests of the session change
    r = runner.invoke(app, [*args, "--device", "cpu", "--quiet", "--set", "run.num_threads=1"])
    assert r.exit_code == 0, r.output


def _capability() -> str:
    return str(torch.backends.cpu.get_cpu_capability())


def _pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    import hood.engine.runtime as runtime

    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)  # float32 training on every CPU
    write_image_folder(tmp_path / "gid" / "train", per_class=50)
    write_image_folder(tmp_path / "gid" / "test", per_class=8, offset=100)
    write_flat_folder(tmp_path / "gaux", count=30, seed=3)
    write_flat_folder(tmp_path / "good", count=20, seed=11)
    _invoke("pretrain", "--dataset", str(tmp_path / "gid"), "--arch", "wrn10_2", "--epochs", "3", "--batch-size", "16",
            "--seed", "3", "--out", "clf", "--set", "pretrain.val_fraction=0.1")
    common = ("--dataset", str(tmp_path / "gid"), "--arch", "wrn10_2", "--classifier", "clf/classifier.pt")
    _invoke("train-decoder", *common, "--aux", str(tmp_path / "gaux"), "--epochs", "2", "--num-ood", "24",
            "--num-id", "120", "--fw-layers", "2", "--batch-size", "16", "--seed", "3", "--out", "dec",
            "--set", "decoder.noise_floor_quantile=0.5")
    _invoke("evaluate", *common, "--run", "dec", "--methods", "all", "--ood", f"{tmp_path / 'good'},uniform-noise",
            "--ood-count", "16")
    _invoke("evaluate", *common, "--run", "dec", "--methods", "all", "--validation", "--ood", "uniform-noise",
            "--ood-count", "16", "--set", "data.val_id_source=test")
    out: dict[str, np.ndarray] = {}
    state = torch.load("dec/decoder.pt", weights_only=True)["state_dict"]
    for name, t in sorted(state.items()):
        if t.is_floating_point():
            t = t.double()
            out[f"decoder/{name}"] = np.array([t.sum().item(), t.square().sum().item(), *t.flatten()[:6].tolist()])
    for path in sorted(Path("dec/scores").rglob("*.npz")):
        with np.load(path) as f:
            out[f"scores/{path.parent.name}/{path.stem}"] = f["scores"]
    for file in ("results.json", "validation.json"):
        thresholds = json.loads(Path("dec", file).read_text())["thresholds"]
        out.update({f"{file}/threshold/{m}": np.array([v]) for m, v in thresholds.items()})
    return out


def test_golden_run_gives_the_recorded_decoder_and_scores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    got = _pipeline(tmp_path, monkeypatch)
    if os.environ.get("HOOD_WRITE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        np.savez_compressed(GOLDEN, capability=np.array(_capability()), **got)
        pytest.skip(f"wrote {GOLDEN}")
    # and `hood score` accepts every method's stored threshold on this run
    from hood.detectors import all_methods

    for method in all_methods():
        r = runner.invoke(app, ["score", str(tmp_path / "good"), "--run", "dec", "--method", method, "--device", "cpu", "-q",
                                "--json", "--set", "run.num_threads=1"])
        assert r.exit_code == 0, (method, r.output)
        assert json.loads(r.stdout)["threshold_source"].endswith("results.json (keeps 95% of ID test)"), method
    with np.load(GOLDEN) as f:
        want = {k: f[k] for k in f.files}
    tol = 1e-6 if str(want.pop("capability")) == _capability() else 1e-4
    assert sorted(got) == sorted(want), set(got) ^ set(want)
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=tol, atol=tol, err_msg=key)

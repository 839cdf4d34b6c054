"""Data-parallel training under torchrun: two gloo processes on the CPU, on tiny synthetic data.

One torchrun launch (interpreter start-up is most of the cost on a small machine) runs a driver that
calls the real CLI twice, ``hood pretrain`` then ``hood train-decoder``, exactly as
``torchrun -m hood ...`` would, and then trains a tiny BatchNorm-free network with the engine's loop.
The test then checks in this one process that

- each command wrote one run directory, once (rank 0), with loadable checkpoints without ``module.``;
- the DDP decoder evaluates like a single-process one (same protocol, same ID test accuracy);
- sharding + gradient all-reduce are exactly single-process training: without BatchNorm (whose batch
  statistics are per rank under DDP, as usual) the two-process weights equal the one-process weights.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from hood.config import PretrainConfig, resolve
from hood.engine import distributed
from hood.engine.pretrain import fit_classifier
from hood.models.checkpoint import load_classifier, load_decoder, safe_load

DRIVER = r'''
import sys
import torch
from hood.cli.app import app
from hood.engine import distributed
from test_distributed import tiny_fit

def mark(what):  # where a failing run got to, in the assertion message
    print(f"driver rank {distributed.rank()}: {what}", file=sys.stderr, flush=True)

def cli(*args):
    code = app(list(args), standalone_mode=False)  # click returns an Exit's code instead of exiting
    assert code in (0, None), f"hood {args[0]} exited {code}"

common = ["--device", "cpu", "--quiet", "--seed", "0"]
cli("pretrain", "-d", "tiny-id", "-a", "wrn10_2", "--epochs", "3", "--batch-size", "12", "--out", "runs/ddp-pre", *common)
mark("pretrain done")
cli("train-decoder", "-c", "runs/ddp-pre/config.yaml", "--classifier", "runs/ddp-pre/classifier.pt", "--aux", "tiny-ood",
    "--num-ood", "12", "--epochs", "2", "--batch-size", "8", "--out", "runs/ddp-dec", *common)
mark("train-decoder done")
assert distributed.world_size() == 2
model = tiny_fit()
mark("tiny_fit done")
if distributed.is_main_process():
    torch.save(model.state_dict(), "tiny_ddp.pt")
mark("exiting")
'''


class TinyNet(nn.Module):
    """No BatchNorm, no dropout: DDP must then reproduce one-process training to rounding error."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3)
        self.linear = nn.Linear(4, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.conv(x).mean((2, 3)))


def tiny_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (42, 3, 8, 8), dtype=torch.uint8, generator=g), torch.randint(0, 3, (42,), generator=g)


def tiny_fit() -> nn.Module:
    """Two epochs of the real pretrain loop (shuffle, crop/flip, sharding, all-reduce); 42 = 5 x 8 + 2."""
    x, y = tiny_data()
    model = TinyNet()
    cfg = PretrainConfig(epochs=2, batch_size=8, scheduler="none")
    fit_classifier(model, x, y, x[:0], y[:0], cfg, 0, torch.device("cpu"))  # type: ignore[arg-type]
    return model


def _torchrun(args: list[str], cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(), reason="needs gloo")
def test_torchrun_two_processes_train_like_one(id_folder: Path, ood_folder: Path, tmp_path: Path) -> None:
    assert id_folder == tmp_path / "tiny-id" and ood_folder == tmp_path / "tiny-ood"  # where the driver looks
    (tmp_path / "driver.py").write_text(DRIVER)
    proc = _torchrun(["driver.py"], tmp_path)
    if proc.returncode != 0 and "terminate called without an active exception" in proc.stderr:
        # a rare abort of both ranks seen under load (3 of ~47 runs on a busy 2-core machine, one after the
        # exit barrier was added; the one log kept showed it after train-decoder had finished, cause not
        # found); one clean retry, with the driver's progress marks in stderr for the next look; any
        # other failure fails at once
        shutil.rmtree(tmp_path / "runs", ignore_errors=True)
        proc = _torchrun(["driver.py"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # rank 0 wrote each run once; the checkpoints carry no DDP prefix and load in this one process
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["ddp-dec", "ddp-pre"]
    pre = json.loads((tmp_path / "runs/ddp-pre/run.json").read_text())
    assert pre["status"] == "complete" and len(pre["history"]) == 3
    ckpt = safe_load(tmp_path / "runs/ddp-pre/classifier.pt")
    assert not any(k.startswith("module.") for k in ckpt["net_state_dict"])
    clf = load_classifier(tmp_path / "runs/ddp-pre/classifier.pt")
    dec_state = safe_load(tmp_path / "runs/ddp-dec/decoder.pt")["state_dict"]
    assert not any(k.startswith("module.") for k in dec_state)
    load_decoder(tmp_path / "runs/ddp-dec/decoder.pt", clf)
    dec = json.loads((tmp_path / "runs/ddp-dec/run.json").read_text())
    assert dec["status"] == "complete" and len(dec["losses"]) == 2

    # the DDP checkpoints evaluate in one process exactly like a single-process run's do
    from hood.jobs.evaluate import evaluate

    cfg = resolve(str(tmp_path / "runs/ddp-dec/config.yaml"), {"data.ood": [str(tmp_path / "tiny-ood")], "data.ood_count": 12, "evaluate.methods": ["heatmap"], "run.device": "cpu"})
    res = evaluate(cfg, str(tmp_path / "runs/ddp-dec")).results
    assert res["n_id"] == 12 and res["results"]["heatmap"]["tiny-ood"]["n"] == 12
    assert res["id_test_accuracy"] == pytest.approx(pre["test_acc"])
    assert 0.0 <= res["results"]["heatmap"]["tiny-ood"]["auroc"] <= 1.0

    # sharding and all-reduce are exact: two processes == one process, weight for weight
    ddp = torch.load(tmp_path / "tiny_ddp.pt", weights_only=True)
    single = tiny_fit().state_dict()
    for k, v in single.items():
        torch.testing.assert_close(ddp[k], v, rtol=1e-5, atol=1e-6)


def test_shard_is_identity_in_one_process() -> None:
    batch = torch.arange(10)
    assert not distributed.is_distributed()
    assert torch.equal(distributed.shard(batch), batch)
    assert distributed.is_main_process() and distributed.world_size() == 1
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}

"""Resuming: a run killed mid-epoch and resumed ends bitwise equal to an uninterrupted one (CPU).

The kill tests run real ``hood`` processes (SIGKILL cannot be simulated in-process); an uninterrupted
twin runs beside the victim, one thread each, so the pair costs about one run's wall time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from hood.config import Config
from hood.engine.runtime import load_optimizer_state
from hood.errors import RunError, TrainingDivergedError
from hood.jobs.resume import Checkpointer, capture_rng, restore_rng
from hood.models.checkpoint import classifier_state, save_checkpoint
from hood.models.registry import build_classifier
from hood.progress import NullReporter
from hood.runs import create_run, open_run

DET = ["--set", "run.deterministic=true", "--set", "run.num_threads=1", "-q"]
# how long a test waits on a run's file or a process before calling it stuck: the waits end as soon as the file
# says so, so the bound costs nothing on a fast machine and only has to outlast the slowest one (CI runners with
# both cores taken by another job took minutes where a quiet laptop takes seconds); $HOOD_TEST_PATIENCE_S sets it
PATIENCE_S = float(os.environ.get("HOOD_TEST_PATIENCE_S", "900"))


def _interruptible() -> None:
    """In the child: SIGINT back to its default. A test run started in the background of a script (CI
    runners, `make test &`) inherits SIGINT *ignored*, and Python then installs no KeyboardInterrupt
    handler, so the SIGINT test would wait on a child that cannot hear it (seen: a 120 s hang)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def hood(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "hood", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_interruptible)


def finish(p: subprocess.Popen, timeout: float = PATIENCE_S) -> tuple[int, str]:
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
        raise AssertionError(f"process did not end within {timeout} s: {err[-500:]}") from None
    return p.returncode, err


def run_info(path: Path) -> dict:
    try:
        return json.loads((path / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def wait_for(p: subprocess.Popen, path: Path, cond, timeout: float = PATIENCE_S) -> dict:
    """Poll ``path``/run.json until ``cond`` holds; fail at once if the process ends first, or after ``timeout``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        info = run_info(path)
        if cond(info):
            return info
        if p.poll() is not None:
            raise AssertionError(f"process ended early ({p.returncode}): {p.stderr.read() if p.stderr else ''}")
        time.sleep(0.005)
    raise AssertionError(f"no change in {path}/run.json within {timeout:.0f} s ($HOOD_TEST_PATIENCE_S): {run_info(path)}")


def kill_mid_epoch_two(p: subprocess.Popen, out: Path) -> None:
    """SIGKILL during the second epoch: once epoch 1 is on disk, a third of an epoch later."""
    t0 = time.monotonic()
    wait_for(p, out, lambda i: "history" in i or "losses" in i)  # training has started
    t_start = time.monotonic()
    wait_for(p, out, lambda i: i.get("epochs_done", 0) >= 1)
    epoch_time = time.monotonic() - t_start
    time.sleep(min(epoch_time / 3, 2.0))
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=PATIENCE_S)
    assert p.returncode == -signal.SIGKILL, f"not killed ({p.returncode}) after {time.monotonic() - t0:.1f}s"


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def test_pretrain_sigkill_mid_epoch_then_resume_equals_uninterrupted(id_folder: Path, tmp_path: Path) -> None:
    common = ["pretrain", "-d", str(id_folder), "-a", "wrn10_2", "--epochs", "3", "--batch-size", "8",
              "--set", "pretrain.val_fraction=0.1", *DET]
    a = hood(*common, "--out", "full")
    b = hood(*common, "--out", "victim")
    kill_mid_epoch_two(b, tmp_path / "victim")
    killed = run_info(tmp_path / "victim")
    assert killed["status"] == "running" and 1 <= killed["epochs_done"] < 3
    load(tmp_path / "victim" / "train_state.pt")  # whatever instant the kill hit, the saved state is whole
    code, err = finish(hood("pretrain", "--resume", "victim", "-q"))
    assert code == 0, err
    assert finish(a)[0] == 0
    full, resumed = load(tmp_path / "full" / "train_state.pt"), load(tmp_path / "victim" / "train_state.pt")
    assert resumed["epoch"] == full["epoch"] == 3
    assert_same_tensors(full["model"], resumed["model"])
    assert full["history"] == resumed["history"]
    assert_same_tensors(load(tmp_path / "full" / "classifier.pt")["net_state_dict"], load(tmp_path / "victim" / "classifier.pt")["net_state_dict"])
    assert run_info(tmp_path / "victim")["status"] == "complete"


def test_wait_for_ends_when_the_file_says_so_and_when_the_process_dies(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        threading.Timer(0.3, lambda: (tmp_path / "run.json").write_text('{"epochs_done": 1}')).start()
        t0 = time.monotonic()
        assert wait_for(sleeper, tmp_path, lambda i: i.get("epochs_done", 0) >= 1)["epochs_done"] == 1
        assert time.monotonic() - t0 < 10  # on the file, not on a clock
    finally:
        sleeper.kill()
        sleeper.wait()
    with pytest.raises(AssertionError, match="ended early"):
        wait_for(subprocess.Popen([sys.executable, "-c", "pass"]), tmp_path, lambda i: False)
    assert PATIENCE_S >= 600


def _random_classifier(path: Path, classes: int = 3) -> Path:
    torch.manual_seed(1)
    model = build_classifier("wrn10_2", classes)
    save_checkpoint(classifier_state(model, "wrn10_2", [f"class{i}" for i in range(classes)], {}), path)
    return path


def test_train_decoder_sigkill_then_resume_equals_uninterrupted(id_folder: Path, ood_folder: Path, tmp_path: Path) -> None:
    clf = _random_classifier(tmp_path / "clf.pt")
    common = ["train-decoder", "--classifier", str(clf), "-d", str(id_folder), "--aux", str(ood_folder),
              "--num-ood", "10", "--epochs", "3", "--batch-size", "8", "--set", "model.arch=wrn10_2", *DET]
    a = hood(*common, "--out", "full")
    b = hood(*common, "--out", "victim")
    kill_mid_epoch_two(b, tmp_path / "victim")
    samples = (tmp_path / "victim" / "ood_samples.json").read_text()
    code, err = finish(hood("train-decoder", "--resume", "victim", "-q"))
    assert code == 0, err
    assert finish(a)[0] == 0
    assert (tmp_path / "victim" / "ood_samples.json").read_text() == samples  # reused, not re-sampled
    assert_same_tensors(load(tmp_path / "full" / "decoder.pt")["state_dict"], load(tmp_path / "victim" / "decoder.pt")["state_dict"])
    assert run_info(tmp_path / "full")["losses"] == run_info(tmp_path / "victim")["losses"]


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_last_epoch_and_says_how_to_resume(id_folder: Path, tmp_path: Path, sig: int, code: int) -> None:
    # a checkpoint interval of hours: nothing but the first epoch would be on disk without the save on interrupt
    # far more epochs than the test waits for: the run must still be going when the signal arrives
    p = hood("pretrain", "-d", str(id_folder), "-a", "wrn10_2", "--epochs", "100000", "--batch-size", "8",
             "--set", "run.checkpoint_interval_s=100000", "--out", "r", *DET)
    wait_for(p, tmp_path / "r", lambda i: i.get("epochs_trained", 0) >= 2)
    p.send_signal(sig)
    rc, err = finish(p)
    assert rc == code, err
    assert "hood pretrain --resume r" in err and "Traceback" not in err
    info = run_info(tmp_path / "r")
    assert info["status"] == "interrupted"
    state = load(tmp_path / "r" / "train_state.pt")
    assert state["epoch"] >= 2 and info["epochs_done"] == state["epoch"]
    assert not list((tmp_path / "r").glob(".*.tmp"))


def _cfg(id_folder: Path, ood_folder: Path, clf: Path, out: str, **decoder: object) -> Config:
    cfg = Config()
    cfg.data.id, cfg.data.aux, cfg.model.arch, cfg.model.classifier = str(id_folder), str(ood_folder), "wrn10_2", str(clf)
    cfg.decoder.num_ood, cfg.decoder.num_id, cfg.decoder.epochs, cfg.decoder.batch_size = 6, 10, 3, 8
    cfg.run.out, cfg.run.device = out, "cpu"
    for k, v in decoder.items():
        setattr(cfg.decoder, k, v)
    return cfg


def test_nan_stops_with_epoch_and_lr_hint_and_keeps_last_good_checkpoint(
    id_folder: Path, ood_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hood.engine import decoder_training
    from hood.jobs.train_decoder import train_decoder

    real = decoder_training.heatmap_loss
    calls = {"n": 0}
    per_epoch = -(-(10 + 6) // 8)  # batches per epoch

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] > 2 * per_epoch else loss  # NaN from epoch 3 on

    monkeypatch.setattr(decoder_training, "heatmap_loss", poisoned)
    cfg = _cfg(id_folder, ood_folder, _random_classifier(tmp_path / "clf.pt"), "nan")
    with pytest.raises(TrainingDivergedError) as err:
        train_decoder(cfg)
    msg = str(err.value)
    assert "\n" not in msg and "epoch 3" in msg and "learning rate" in msg and "decoder.lr=" in msg
    state = load(tmp_path / "nan" / "train_state.pt")
    assert state["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in state["decoder"].values() if v.is_floating_point())
    assert run_info(tmp_path / "nan")["status"] == "diverged"
    assert not (tmp_path / "nan" / "decoder.pt").exists()
    # the hint's way out: resume from epoch 2 with a lower learning rate (allowed, and logged)
    monkeypatch.setattr(decoder_training, "heatmap_loss", real)
    cfg.decoder.lr = 1e-5
    logs: list[str] = []

    class Rep(NullReporter):
        def log(self, m: str) -> None:
            logs.append(m)

    done = train_decoder(cfg, Rep(), open_run(tmp_path / "nan"))
    assert done.info["status"] == "complete" and len(done.info["losses"]) == 3
    assert any("decoder.lr 0.0002 -> 1e-05" in m for m in logs)


def test_resume_reuses_saved_outliers_and_refuses_changed_config(
    id_folder: Path, ood_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hood.jobs import train_decoder as job

    clf = _random_classifier(tmp_path / "clf.pt")
    cfg = _cfg(id_folder, ood_folder, clf, "r", epochs=2)
    job.train_decoder(cfg)
    # turn the finished run back into an interrupted one at epoch 2, then ask for 3 epochs
    info = run_info(tmp_path / "r")
    (tmp_path / "r" / "run.json").write_text(json.dumps({**info, "status": "running"}))
    real = job.seeded_indices
    pool = len(list(ood_folder.iterdir()))
    monkeypatch.setattr(job, "seeded_indices", lambda n, count, seed: pytest.fail("resume must not draw outliers again")
                        if n == pool else real(n, count, seed))

    changed = _cfg(id_folder, ood_folder, clf, "r", epochs=3, loss_weight=1.0)
    with pytest.raises(RunError, match="decoder.loss_weight"):
        job.train_decoder(changed, run=open_run(tmp_path / "r"))
    seed = _cfg(id_folder, ood_folder, clf, "r", epochs=3)
    seed.run.seed = 7
    with pytest.raises(RunError, match="run.seed"):
        job.train_decoder(seed, run=open_run(tmp_path / "r"))
    fewer = _cfg(id_folder, ood_folder, clf, "r", epochs=1)
    with pytest.raises(RunError, match="already done"):
        job.train_decoder(fewer, run=open_run(tmp_path / "r"))

    more = _cfg(id_folder, ood_folder, clf, "r", epochs=3)
    more.run.device = "cpu"  # device, threads, paths may change
    done = job.train_decoder(more, run=open_run(tmp_path / "r"))
    assert done.info["status"] == "complete" and len(done.info["losses"]) == 3

    samples = json.loads((tmp_path / "r" / "ood_samples.json").read_text())
    (tmp_path / "r" / "run.json").write_text(json.dumps({**done.info, "status": "running"}))
    (tmp_path / "r" / "ood_samples.json").write_text(json.dumps({**samples, "pool_size": 99}))
    with pytest.raises(RunError, match="auxiliary set had 99"):
        job.train_decoder(_cfg(id_folder, ood_folder, clf, "r", epochs=4), run=open_run(tmp_path / "r"))


def test_a_complete_run_extended_with_more_epochs_equals_a_longer_run(id_folder: Path, ood_folder: Path, tmp_path: Path) -> None:
    from hood.jobs import train_decoder as job

    clf = _random_classifier(tmp_path / "clf.pt")
    straight = job.train_decoder(_det(_cfg(id_folder, ood_folder, clf, "long", epochs=3)))
    job.train_decoder(_det(_cfg(id_folder, ood_folder, clf, "short", epochs=2)))
    assert run_info(tmp_path / "short")["status"] == "complete"
    with pytest.raises(RunError, match="already complete after 2 epochs.*--epochs N above 2"):
        job.train_decoder(_det(_cfg(id_folder, ood_folder, clf, "short", epochs=2)), run=open_run(tmp_path / "short"))
    extended = job.train_decoder(_det(_cfg(id_folder, ood_folder, clf, "short", epochs=3)), run=open_run(tmp_path / "short"))
    assert extended.info["status"] == "complete" and extended.info["evaluated"] is False
    assert extended.info["losses"] == straight.info["losses"]
    assert_same_tensors(load(tmp_path / "long" / "decoder.pt")["state_dict"], load(tmp_path / "short" / "decoder.pt")["state_dict"])


def _det(cfg: Config) -> Config:
    cfg.run.deterministic, cfg.run.num_threads = True, 1
    return cfg


def test_resume_cli_refusals(id_folder: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hood.cli.app import app

    cfg = Config()
    cfg.run.out = "p"
    run = create_run(cfg, "pretrain")
    runner = CliRunner()
    r = runner.invoke(app, ["pretrain", "--resume", "p", "--out", "elsewhere"])
    assert r.exit_code == 2 and "drop --out" in r.output
    r = runner.invoke(app, ["train-decoder", "--resume", "p"])
    assert r.exit_code == 2 and "hood pretrain --resume p" in r.output
    run.mark_complete()
    r = runner.invoke(app, ["pretrain", "--resume", "p"])
    assert r.exit_code == 2 and "already complete" in r.output
    r = runner.invoke(app, ["pretrain", "--resume", "nowhere"])
    assert r.exit_code == 2 and "not a hood run directory" in r.output


def test_checkpointer_without_an_interval_writes_every_epoch_and_flushes_nothing_pending(tmp_path: Path) -> None:
    cfg = Config()
    cfg.run.out = "c"
    run = create_run(cfg, "pretrain")
    ck = Checkpointer(run, "pretrain", total_epochs=10)
    w = torch.zeros(2)
    for epoch in (1, 2, 3, 4):
        w += 1
        ck.epoch_end(epoch, {"w": w})
        assert load(run.file("train_state.pt"))["epoch"] == epoch
    assert ck.flush() == 4
    saved = load(run.file("train_state.pt"))
    assert saved["epoch"] == 4 and torch.equal(saved["w"], torch.full((2,), 4.0)) and saved["format"] == "hood.train_state"
    assert open_run("c").info["epochs_done"] == 4


def test_checkpointer_writes_at_most_once_per_interval_but_first_last_and_on_flush(tmp_path: Path) -> None:
    cfg = Config()
    cfg.run.out = "c"
    run = create_run(cfg, "pretrain")
    ck = Checkpointer(run, "pretrain", total_epochs=6, min_interval_s=3600)
    w = torch.zeros(2)
    for epoch in (1, 2, 3):
        w += 1
        ck.epoch_end(epoch, {"w": w})
    assert load(run.file("train_state.pt"))["epoch"] == 1  # the first epoch at once, then the interval holds
    assert open_run("c").info["epochs_done"] == 1
    assert ck.flush() == 3  # an interrupt still saves the newest epoch
    assert torch.equal(load(run.file("train_state.pt"))["w"], torch.full((2,), 3.0))
    for epoch in (4, 5, 6):
        w += 1
        ck.epoch_end(epoch, {"w": w})
    assert load(run.file("train_state.pt"))["epoch"] == 6  # the last epoch is always written


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    import random

    import numpy as np

    state = capture_rng()
    save_checkpoint({"rng": state}, tmp_path / "s.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1))
    restore_rng(load(tmp_path / "s.pt")["rng"])
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])


@pytest.mark.parametrize("make", [
    lambda ps, **kw: torch.optim.Adam(ps, lr=1e-3, **kw),
    lambda ps, **kw: torch.optim.SGD(ps, lr=0.1, momentum=0.9, **kw),
])
def test_optimizer_state_keeps_this_process_kernel_choice(make) -> None:
    """A checkpoint written with fused=True (a GPU run) resumes with this process's flags, its state intact."""
    w = torch.nn.Parameter(torch.ones(4))
    saved_opt = make([w], fused=True)
    w.grad = torch.full((4,), 0.5)
    saved_opt.step()
    saved = saved_opt.state_dict()
    assert saved["param_groups"][0]["fused"] is True

    v = torch.nn.Parameter(torch.ones(4))
    opt = make([v], foreach=False)
    load_optimizer_state(opt, saved)
    assert opt.param_groups[0]["fused"] is None and opt.param_groups[0]["foreach"] is False
    for key, value in saved["state"][0].items():
        assert torch.equal(opt.state_dict()["state"][0][key], value), key
    v.grad = torch.full((4,), 0.5)
    opt.step()  # a CPU step with the loaded state runs
    assert torch.isfinite(v).all()

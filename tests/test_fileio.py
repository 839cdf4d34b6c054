"""Atomic writes, disk full, no permission, and incomplete runs: never a torn file under a final name."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hood.cli.app import app
from hood.config import Config
from hood.data.cache import cache_dir
from hood.data.sources import load_id_splits
from hood.errors import HoodError, RunError
from hood.fileio import atomic_save_with, atomic_write_json, atomic_write_text, ensure_dir
from hood.jobs.lookup import classifier_path
from hood.runs import create_run, find_latest

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_atomic_write_replaces_whole_and_keeps_the_umask_mode(tmp_path: Path) -> None:
    f = tmp_path / "sub" / "a.json"
    atomic_write_json(f, {"x": 1})
    atomic_write_json(f, {"x": 2})
    assert json.loads(f.read_text()) == {"x": 2}
    mask = os.umask(0o022)
    os.umask(mask)
    assert f.stat().st_mode & 0o777 == 0o666 & ~mask
    assert not leftovers(tmp_path)


def test_a_failing_writer_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    f = tmp_path / "scores.npz"
    atomic_save_with(f, lambda fh: np.savez_compressed(fh, scores=np.arange(3)))
    before = f.read_bytes()

    def half_then_crash(fh) -> None:
        fh.write(b"PK partial")
        raise KeyboardInterrupt  # Ctrl-C mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_save_with(f, half_then_crash)
    assert f.read_bytes() == before and not leftovers(tmp_path)
    assert np.load(f)["scores"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("where", ["fsync", "write"])
def test_disk_full_is_one_line_and_nothing_is_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    f = tmp_path / "train_state.pt"
    torch.save({"ok": torch.ones(1)}, f)
    before = f.read_bytes()
    full = OSError(errno.ENOSPC, "No space left on device")
    if where == "fsync":
        monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(full))
        writer = lambda fh: torch.save({"w": torch.zeros(1000)}, fh)  # noqa: E731
    else:
        def writer(fh) -> None:
            fh.write(b"x" * 100)
            raise full
    with pytest.raises(HoodError) as err:
        atomic_save_with(f, writer)
    msg = str(err.value)
    assert "no space left" in msg and str(f) in msg and "\n" not in msg
    assert f.read_bytes() == before and not leftovers(tmp_path)


def test_torch_save_into_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's zip writer surfaces the file's error; it still reads as disk full."""
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fh) -> None:
            self.fh = fh

        def write(self, b) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.fh.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: Full(real_fdopen(fd, *a, **k)))
    with pytest.raises(HoodError, match="no space left"):
        atomic_save_with(tmp_path / "c.pt", lambda fh: torch.save({"w": torch.zeros(10)}, fh))
    assert not (tmp_path / "c.pt").exists() and not leftovers(tmp_path)


def _deny(monkeypatch: pytest.MonkeyPatch) -> None:
    def no(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("hood.fileio.tempfile.mkstemp", no)


def test_no_permission_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _deny(monkeypatch)
    with pytest.raises(HoodError, match=r"no permission to write .*x\.txt; choose a writable --out"):
        atomic_write_text(tmp_path / "x.txt", "hi")
    assert not (tmp_path / "x.txt").exists()


@pytest.mark.skipif(IS_ROOT, reason="root writes into read-only folders; covered by the monkeypatched tests")
def test_read_only_output_folder(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(HoodError, match="no permission"):
            atomic_write_text(ro / "x.txt", "hi")
        with pytest.raises(HoodError, match="no permission"):
            ensure_dir(ro / "run")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_cli_read_only_out_is_one_line_and_writes_nothing(id_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _deny(monkeypatch)
    r = CliRunner().invoke(app, ["pretrain", "-d", str(id_folder), "-a", "wrn10_2", "--epochs", "1", "--out", "out", "-q"])
    assert r.exit_code == 2, r.output
    assert "no permission to write" in r.output and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "run.json").exists() and not (tmp_path / "out" / "config.yaml").exists()


def test_cli_out_under_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("")
    r = CliRunner().invoke(app, ["pretrain", "-d", "demo-digits", "--out", "blocker/run", "-q"])
    assert r.exit_code == 2 and "Traceback" not in r.output and "blocker" in r.output


def test_disk_full_during_training_keeps_the_last_whole_checkpoint(
    id_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second epoch's train_state cannot be written: one line, epoch 1's state intact, no temp files."""
    real = os.fsync
    seen = {"state": 0}

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        if ".train_state.pt." in target:
            seen["state"] += 1
            if seen["state"] >= 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to tell which file is being synced")
    monkeypatch.setattr(os, "fsync", fsync)
    r = CliRunner().invoke(app, ["pretrain", "-d", str(id_folder), "-a", "wrn10_2", "--epochs", "3", "--batch-size", "16",
                                 "--set", "pretrain.val_fraction=0.1", "--out", "full", "-q"])
    assert r.exit_code == 1, r.output  # a full disk is the machine's error: exit 1, as for any OS error
    assert "no space left" in r.output and "train_state.pt" in r.output and "Traceback" not in r.output
    state = torch.load(tmp_path / "full" / "train_state.pt", weights_only=True)
    assert state["epoch"] == 1
    assert not leftovers(tmp_path / "full")
    info = json.loads((tmp_path / "full" / "run.json").read_text())
    assert info["status"] == "failed" and "no space left" in info["error"]  # not "running" forever


def test_latest_run_pickers_skip_incomplete_runs_and_say_so(tmp_path: Path) -> None:
    cfg = Config()
    cfg.name = "x"
    done = create_run(cfg, "pretrain")
    done.mark_complete()
    newer = create_run(cfg, "pretrain")  # started later, never finished
    newer.update(status="interrupted")
    (tmp_path / "runs" / "junk").mkdir()
    (tmp_path / "runs" / "junk" / "run.json").write_text("{not json")
    run, skipped = find_latest("runs", "pretrain", "x")
    assert run is not None and run.path == done.path and skipped == 2

    logs: list[str] = []

    class Rep:
        def log(self, m: str) -> None:
            logs.append(m)

    assert classifier_path(cfg, Rep()) == done.file("classifier.pt")  # type: ignore[arg-type]
    assert any("skipped 2 incomplete pretrain run(s)" in m for m in logs)
    done.update(status="running")
    with pytest.raises(RunError, match=r"no complete pretrain run .*\(3 incomplete one\(s\) skipped"):
        classifier_path(cfg, Rep())  # type: ignore[arg-type]


def test_an_interrupted_out_is_not_silently_overwritten(tmp_path: Path) -> None:
    cfg = Config()
    cfg.run.out = "r"
    create_run(cfg, "pretrain")
    (tmp_path / "r" / "train_state.pt").write_bytes(b"x")
    with pytest.raises(RunError, match="--resume r"):
        create_run(cfg, "pretrain")


def test_data_cache_is_written_atomically_and_a_damaged_entry_is_rebuilt(id_folder: Path) -> None:
    first = load_id_splits(str(id_folder), Path("."), 32)
    entries = list(cache_dir().glob("*.pt"))
    assert len(entries) == 1 and not leftovers(cache_dir())
    entries[0].write_bytes(b"garbage")
    again = load_id_splits(str(id_folder), Path("."), 32)
    assert torch.equal(first["train"].images, again["train"].images)
    torch.load(entries[0], weights_only=True)  # rewritten whole


def test_an_interrupt_during_a_checkpoint_write_waits_for_the_write(tmp_path: Path) -> None:
    """SIGINT arriving inside torch.save (as `timeout --signal=INT` did on a GPU run) used to break the zip
    writer and end in a traceback; now the file is written whole and the interrupt follows it."""
    import signal

    # Python's own handler, whatever this process inherited: a test run started in the background of a
    # script inherits SIGINT *ignored*, and an ignored interrupt rightly raises nothing
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    target = tmp_path / "state.pt"
    obj = {"w": torch.arange(1000.0), "epoch": 7}

    def writer(fh) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # delivered mid-write
        torch.save(obj, fh)

    try:
        with pytest.raises(KeyboardInterrupt):
            atomic_save_with(target, writer)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back
    finally:
        signal.signal(signal.SIGINT, previous)
    loaded = torch.load(target, weights_only=True)
    assert loaded["epoch"] == 7 and torch.equal(loaded["w"], obj["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]  # no temporary file left

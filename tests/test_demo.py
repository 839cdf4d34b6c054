"""``hood demo`` twice in one folder, and bundled config names that a folder in the working directory shares."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hood.cli.app import app
from hood.cli.demo import demo_run
from hood.cli.options import build_config, bundled_configs, config_path
from hood.errors import RunError
from hood.progress import NullReporter
from hood.runs import create_run, open_run


def _cfg(out: Path, *sets: str):
    cfg = build_config("demo", {"run.device": "cpu"}, list(sets))
    cfg.run.out = str(out)
    return cfg


def _complete(out: Path, *sets: str) -> Path:
    run = create_run(_cfg(out, *sets), "pretrain")
    (run.path / "classifier.pt").write_bytes(b"weights")
    run.mark_complete(test_acc=0.9)
    from hood import locks

    locks.release_all()  # as at the end of the first demo's process
    return run.path


def test_a_second_demo_reuses_the_complete_run_made_with_the_same_settings(tmp_path: Path) -> None:
    path = _complete(Path("runs") / "demo" / "pretrain")  # relative, as hood demo names it (the tests run in tmp_path)
    run, done = demo_run(_cfg(path), "pretrain", True, NullReporter())
    assert done and run.path == path and run.info["test_acc"] == 0.9, "not reused"
    assert (path / "classifier.pt").read_bytes() == b"weights"


@pytest.mark.parametrize("why", ["other settings", "classifier retrained"])
def test_a_second_demo_replaces_a_demo_run_it_cannot_reuse(tmp_path: Path, why: str) -> None:
    path = _complete(tmp_path / "pretrain")
    cfg = _cfg(path, "pretrain.epochs=2") if why == "other settings" else _cfg(path)
    run, done = demo_run(cfg, "pretrain", why != "classifier retrained", NullReporter())
    assert not done and run.info["status"] == "running"
    assert not (path / "classifier.pt").exists() and open_run(path).info["status"] == "running"


def test_the_demo_never_replaces_a_run_that_is_not_its_own(tmp_path: Path) -> None:
    cfg = build_config(None, {"run.device": "cpu", "data.id": "demo-digits", "model.arch": "wrn10_2"}, None)
    cfg.run.out = str(tmp_path / "mine")
    run = create_run(cfg, "pretrain")
    run.mark_complete()
    from hood import locks

    locks.release_all()
    with pytest.raises(RunError, match="already holds a complete pretrain run"):
        demo_run(_cfg(run.path), "pretrain", True, NullReporter())
    assert open_run(run.path).info["status"] == "complete"


@pytest.mark.parametrize("name", ["demo", "cifar10_wrn40_2", "paper/cifar10_resnet18"])
def test_a_folder_named_like_a_bundled_config_does_not_shadow_it(tmp_path: Path, name: str) -> None:
    (tmp_path / name).mkdir(parents=True)  # the tests run in tmp_path
    assert config_path(name) == str(bundled_configs()[name])
    assert build_config(name, {}, None) == build_config(str(bundled_configs()[name]), {}, None)


def test_a_file_given_by_path_is_still_read(tmp_path: Path) -> None:
    (tmp_path / "demo").write_text("name: mine\ndata: {id: demo-digits}\nmodel: {arch: wrn10_2}\n")
    assert build_config("demo", {}, None).name == "mine"


def test_hood_demo_starts_with_a_demo_folder_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "demo").mkdir()
    seen = {}

    def stop(cfg, *args, **kwargs):
        seen["cfg"] = cfg
        raise RunError("stopped here")

    monkeypatch.setattr("hood.jobs.pretrain.pretrain", stop)
    r = CliRunner().invoke(app, ["demo", "--device", "cpu", "-q"])
    assert "stopped here" in r.output and "directory" not in r.output
    assert seen["cfg"].data.id == "demo-digits"

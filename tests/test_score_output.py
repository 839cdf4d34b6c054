"""``hood score`` on a run: the recommended method evaluated on it by default, named with the run; rows whole in a
pipe, folded (never cut) on a terminal; heatmap files named after the image. And the commands that read a run
take its data and classifier from it, whatever a ``-c`` config's defaults say."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_decoder_run, write_flat_folder
from rich.console import Console
from typer.testing import CliRunner

from hood.cli.app import app

runner = CliRunner()


def _decoder_run(root: Path) -> Path:
    return tiny_decoder_run(root, per_class=6, ood_count=8, **{"decoder.num_ood": 8})


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A decoder run never evaluated, and one evaluated with heatmap and heatmap+vim+scale (from another
    folder, through a config whose own ID set is the default cifar10: the run's must be used)."""
    root = tmp_path_factory.mktemp("scored")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOOD_CACHE", str(root / "_cache"))
        mp.setenv("HOOD_DATA", str(root / "_data"))
        plain = _decoder_run(root / "plain")
        evaluated = _decoder_run(root / "evaluated")
        (root / "eval.yaml").write_text("name: mine\nevaluate: {methods: [heatmap, heatmap+vim+scale]}\n")
        mp.chdir(root)
        out = runner.invoke(app, ["evaluate", "-c", str(root / "eval.yaml"), "--run", str(evaluated), "--ood", "uniform-noise",
                                  "--ood-count", "8", "--device", "cpu", "-q", "--set", "run.num_threads=1"])
        assert out.exit_code == 0, out.output
    torch.set_num_threads(threads)
    return {"root": root, "plain": plain, "evaluated": evaluated}


def _score(runs: dict[str, Any], run: str, *args: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HOOD_CACHE", str(runs["root"] / "_cache"))
    return runner.invoke(app, ["score", *args, "--run", str(runs[run]), "--device", "cpu", "-q", "--set", "run.num_threads=1"])


@pytest.fixture
def long_named(tmp_path: Path) -> Path:
    return write_flat_folder(tmp_path / ("a_folder_whose_name_alone_is_longer_than_a_terminal_line_" * 2), count=2)


def test_score_defaults_to_the_recommended_method_evaluated_and_says_so(runs: dict[str, Any], long_named: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    out = _score(runs, "evaluated", str(long_named), "--json", monkeypatch=monkeypatch)
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["method"] == "heatmap+vim+scale"
    plain = _score(runs, "plain", str(long_named), monkeypatch=monkeypatch)
    assert plain.exit_code == 0, plain.output
    heading = " ".join(plain.stderr.split())
    assert f"heatmap (the paper's method: none of the recommended ones is evaluated on this run) scores of {runs['plain']}" in heading


def test_score_in_a_pipe_prints_whole_tab_separated_rows(runs: dict[str, Any], long_named: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _score(runs, "evaluated", str(long_named), monkeypatch=monkeypatch)
    assert out.exit_code == 0, out.output
    rows = out.stdout.splitlines()
    assert rows[0] == "file\tclass\tOOD score\tverdict"
    assert [r.split("\t")[0] for r in rows[1:]] == [f"{long_named}/img000.png", f"{long_named}/img001.png"]
    assert all(r.split("\t")[3] in ("in", "out") for r in rows[1:])
    assert f"heatmap+vim+scale (the recommended method on this run) scores of {runs['evaluated']}" in " ".join(out.stderr.split())


def test_score_on_a_terminal_folds_paths_instead_of_cutting_them(runs: dict[str, Any], long_named: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import hood.cli.score_output as output

    monkeypatch.setattr(output, "stdout", Console(force_terminal=True, width=80, highlight=False, color_system=None))
    out = _score(runs, "evaluated", str(long_named), monkeypatch=monkeypatch)
    assert out.exit_code == 0, out.output
    assert "…" not in out.stdout
    cells = "".join(line.split("│")[1].strip() for line in out.stdout.splitlines() if line.count("│") == 5)
    assert f"{long_named}/img000.png" in cells


def test_heatmap_files_are_named_after_the_image(runs: dict[str, Any], long_named: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = _score(runs, "plain", str(long_named / "img000.png"), str(long_named), "--heatmaps", str(tmp_path / "hm"), "--json",
                 monkeypatch=monkeypatch)
    assert out.exit_code == 0, out.output
    assert sorted(p.name for p in (tmp_path / "hm").iterdir()) == ["img000.png", "img000_2.png", "img001.png"]


def test_commands_take_the_runs_data_unless_told(runs: dict[str, Any], long_named: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hood.cli.options import build_config
    from hood.cli.runcfg import with_run_data

    monkeypatch.setenv("HOOD_CACHE", str(runs["root"] / "_cache"))
    cfg = with_run_data(build_config(str(runs["root"] / "eval.yaml"), {}, None), str(runs["evaluated"]), {}, None)
    assert cfg.data.id == str(runs["root"] / "evaluated" / "id") and cfg.model.arch == "wrn10_2"
    assert cfg.evaluate.methods == ["heatmap", "heatmap+vim+scale"]  # the config's own part stays
    told = with_run_data(build_config(None, {"data.id": "demo-digits"}, ["model.arch=wrn40_2"]), str(runs["evaluated"]),
                         {"data.id": "demo-digits"}, ["model.arch=wrn40_2"])
    assert (told.data.id, told.model.arch) == ("demo-digits", "wrn40_2")
    out = _score(runs, "evaluated", str(long_named), "-c", str(runs["root"] / "eval.yaml"), "--json", monkeypatch=monkeypatch)
    assert out.exit_code == 0, out.output
    vis = runner.invoke(app, ["visualize", "--run", str(runs["evaluated"]), "--ood", "uniform-noise", "--n", "2", "--method", "heatmap",
                              "--device", "cpu", "-q", "--set", "run.num_threads=1", "--json"])
    assert vis.exit_code == 0, vis.output

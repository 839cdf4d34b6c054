"""``hood demo``: the whole pipeline on built-in data, offline, in a few minutes on a laptop CPU."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hood.cli.errors import err_console, handle_errors
from hood.cli.options import DeviceOpt, JsonOpt, QuietOpt, SetOpt, build_config, bundled_config, print_json, stdout
from hood.cli.render import results_table
from hood.cli.reporter import RichReporter

if TYPE_CHECKING:
    from hood.config import Config
    from hood.progress import Reporter
    from hood.runs import Run


def demo_run(cfg: Config, command: str, reuse: bool, rep: Reporter) -> tuple[Run, bool]:
    """The demo's ``command`` run in ``cfg.run.out`` and whether it is already complete.

    A second demo in the same folder must work: a complete run made with these very settings is reused (it
    takes seconds, not minutes), and any other demo run there (other settings, or stopped midway) is replaced,
    the folder being the demo's own. A folder holding anything else is refused by :func:`create_run`.
    """
    from hood.config import dump_yaml
    from hood.errors import RunError
    from hood.locks import INFO_FILE
    from hood.runs import RUN_FILE, create_run, lock_run, open_run, portable

    path = Path(cfg.run.out or "")
    if (path / RUN_FILE).is_file():
        lock_run(path, "demo", "wait for the other demo to finish, or choose another --out")
        try:
            old: Run | None = open_run(path)
        except RunError:  # damaged, or another hood's: create_run names the problem
            old = None
        if old is not None and old.info.get("config_name") == "demo" and old.info.get("command") == command:
            same = (path / "config.yaml").is_file() and (path / "config.yaml").read_text() == dump_yaml(portable(cfg))
            if reuse and same and old.info.get("status") == "complete":
                rep.log(f"    reusing the complete run in {path} (same settings; delete it to train again)")
                return old, True
            for entry in path.iterdir():
                if entry.name == INFO_FILE:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
    return create_run(cfg, command), False


@handle_errors()
def demo(
    out: Annotated[str, typer.Option("--out", help="Folder for the demo's runs.")] = "runs/demo",
    device: DeviceOpt = None,
    set_: SetOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """pretrain -> train-decoder -> evaluate -> visualize on scikit-learn's digits (ID) and photo crops.

    A second demo in the same folder reuses the runs made with the same settings."""
    from hood.jobs.evaluate import evaluate
    from hood.jobs.pretrain import pretrain
    from hood.jobs.train_decoder import train_decoder
    from hood.jobs.visualize import visualize

    base = Path(out)
    cfg = build_config(bundled_config("demo"), {"run.device": device, "run.runs_dir": str(base)}, set_)
    with RichReporter(quiet) as rep:
        rep.log("1/4 pretrain the classifier on demo-digits")
        cfg.run.out = str(base / "pretrain")
        clf_run, done = demo_run(cfg, "pretrain", True, rep)
        if not done:
            clf_run = pretrain(cfg, rep, clf_run)
        rep.log(f"    test accuracy {clf_run.info['test_acc'] * 100:.1f}%")
        rep.log("2/4 train the heatmap decoder (outliers: crops of china.jpg)")
        cfg.model.classifier = str(clf_run.file("classifier.pt"))
        cfg.run.out = str(base / "decoder")
        dec_run, reused = demo_run(cfg, "train-decoder", done, rep)
        if not reused:
            dec_run = train_decoder(cfg, rep, dec_run)
        rep.log("3/4 evaluate against crops of flower.jpg and noise")
        result = evaluate(cfg, str(dec_run.path), rep)
        rep.log("4/4 draw heatmaps")
        figures = visualize(cfg, str(dec_run.path), 8, "random", None, rep)
    if json_out:
        print_json({**result.results, "figures": [str(f) for f in figures]})
        return
    stdout.print(results_table(result.results))
    stdout.print(f"heatmaps: {', '.join(str(f) for f in figures)}")
    err_console.print(f"[dim]runs in {base}[/]")

"""``hood demo``: the whole pipeline on built-in data, offline, in a few minutes on a laptop CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hood.cli.errors import err_console, handle_errors
from hood.cli.options import DeviceOpt, JsonOpt, QuietOpt, SetOpt, build_config, print_json, stdout
from hood.cli.render import results_table
from hood.cli.reporter import RichReporter


@handle_errors()
def demo(
    out: Annotated[str, typer.Option("--out", help="Folder for the demo's runs.")] = "runs/demo",
    device: DeviceOpt = None,
    set_: SetOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """pretrain -> train-decoder -> evaluate -> visualize on scikit-learn's digits (ID) and photo crops."""
    from hood.jobs.evaluate import evaluate
    from hood.jobs.pretrain import pretrain
    from hood.jobs.train_decoder import train_decoder
    from hood.jobs.visualize import visualize
    from hood.runs import create_run

    base = Path(out)
    cfg = build_config("demo", {"run.device": device, "run.runs_dir": str(base)}, set_)
    with RichReporter(quiet) as rep:
        rep.log("1/4 pretrain the classifier on demo-digits")
        cfg.run.out = str(base / "pretrain")
        clf_run = pretrain(cfg, rep, create_run(cfg, "pretrain"))
        rep.log(f"    test accuracy {clf_run.info['test_acc'] * 100:.1f}%")
        rep.log("2/4 train the heatmap decoder (outliers: crops of china.jpg)")
        cfg.model.classifier = str(clf_run.file("classifier.pt"))
        cfg.run.out = str(base / "decoder")
        dec_run = train_decoder(cfg, rep, create_run(cfg, "train-decoder"))
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

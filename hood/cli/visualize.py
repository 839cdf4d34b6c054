"""``hood visualize``: PNG grids of inputs, heatmaps and overlays; score histograms and ROC curves."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hood.cli.errors import err_console, handle_errors
from hood.cli.options import (
    ConfigOpt,
    DataRootOpt,
    DatasetOpt,
    DeviceOpt,
    JsonOpt,
    QuietOpt,
    SeedOpt,
    SetOpt,
    build_config,
    print_json,
    stdout,
)
from hood.cli.reporter import RichReporter


@handle_errors()
def visualize(
    config: ConfigOpt = None,
    run: Annotated[str | None, typer.Option("--run", help="train-decoder run (default: latest).")] = None,
    ood: Annotated[str | None, typer.Option("--ood", help="OOD sets to draw, comma-separated (as evaluate).")] = None,
    n: Annotated[int, typer.Option("--n", "-n", help="Images per grid.")] = 8,
    pick: Annotated[str, typer.Option("--pick", help="top, bottom or random (by score).")] = "random",
    method: Annotated[str, typer.Option("--method", help="Detector the histograms show (ROC: all).")] = "heatmap",
    out_dir: Annotated[str | None, typer.Option("--out-dir", help="Folder for the PNGs (default: <run>/figures).")] = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    dataset: DatasetOpt = None,
    data_root: DataRootOpt = None,
    set_: SetOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Draw heatmap grids, score histograms and ROC curves as PNGs.

    For N images of each set: the input, its heatmap and the overlay with the
    score under it; plus score histograms (ID vs each OOD set, the 95%-TPR cut
    marked) and ROC curves from `hood evaluate`'s scores. The run's ID set and
    classifier apply unless named (-d, --set)."""
    from hood.cli.runcfg import latest_decoder_run, with_run_data
    from hood.jobs.visualize import visualize as run_job

    named = {
        "data.ood": None if ood is None else [v.strip() for v in ood.split(",") if v.strip()],
        "run.device": device, "run.seed": seed, "data.root": data_root, "data.id": dataset,
    }
    cfg = build_config(config, named, set_)
    cfg = with_run_data(cfg, run or latest_decoder_run(cfg), named, set_)  # the data the run was trained on
    with RichReporter(quiet) as rep:
        figs = run_job(cfg, run, n, pick, out_dir, rep, method=method)
    for note in figs.notes:
        err_console.print(f"[yellow]note:[/] {note}")
    if json_out:
        print_json({"written": [str(p) for p in figs.paths], "notes": figs.notes})
        return
    table = Table(title="written", title_justify="left")
    table.add_column("figure")
    table.add_column("path")
    for p in figs.paths:
        table.add_row(p.stem, str(p))
    stdout.print(table)

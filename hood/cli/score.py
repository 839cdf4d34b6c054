"""``hood score``: OOD scores and in/out verdicts for a user's own images."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from hood.cli.errors import err_console, handle_errors, printable
from hood.cli.options import ConfigOpt, DeviceOpt, JsonOpt, QuietOpt, SetOpt, build_config, print_json
from hood.cli.reporter import RichReporter


@handle_errors()
def score(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders or archives.")],
    run: Annotated[str | None, typer.Option("--run", help="train-decoder run (default: latest).")] = None,
    method: Annotated[str | None, typer.Option("--method", help="A detector evaluated on the run (see above).")] = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="Score above which an image is out (see above).")] = None,
    heatmaps: Annotated[str | None, typer.Option("--heatmaps", help="Folder for each image's heatmap overlay (PNG).")] = None,
    config: ConfigOpt = None,
    device: DeviceOpt = None,
    set_: SetOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Score your own images: predicted class, OOD score and in/out verdict per file.

    Paths may be image files, folders or archives (.tar, .tar.gz, .tgz, .zip);
    unreadable files are listed, not fatal. The default threshold is the one
    `hood evaluate` stored for the method: it keeps 95% of the ID test images.

    --method defaults to the recommended heatmap+vim+scale, or the best of
    heatmap+vim and heatmap, evaluated on the run (the paper's heatmap when the
    run was never evaluated); the output names the run and the method. The
    run's ID set, outliers and classifier apply unless set (--set data.id=...).
    In a pipe or a file the rows are tab-separated, paths whole."""
    from hood.cli.runcfg import refuse_train_time_keys, with_run_data
    from hood.cli.score_output import print_scores
    from hood.jobs.lookup import decoder_run
    from hood.jobs.recommended import default_method
    from hood.jobs.score import score_images
    from hood.runs import find_latest

    refuse_train_time_keys(set_)  # the run's own config below would not read them
    cfg = build_config(config, {"run.device": device}, set_)
    if run is None:
        found, _ = find_latest(cfg.run.runs_dir, "train-decoder", cfg.name if config else None)
        run = str(found.path) if found else None
    target = decoder_run(run, cfg, RichReporter(True))
    if config is None:  # the run's own config: its resolution, architecture and classifier
        cfg = build_config(str(target.file("config.yaml")), {"run.device": device}, set_)
    else:
        cfg = with_run_data(cfg, str(target.path), {"run.device": device}, set_)
    why = None
    if method is None:
        method, why = default_method(target)
    with RichReporter(quiet) as rep:
        result = score_images(cfg, target, paths, method, threshold, heatmaps, rep)
    if json_out:
        print_json(result.to_dict())
    else:
        print_scores(result, why)
        if heatmaps and result.scored:
            err_console.print(f"[dim]heatmaps: {heatmaps}[/]")
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {escape(printable(note))}")
    if result.images and not result.scored:
        raise typer.Exit(1)

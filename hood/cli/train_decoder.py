"""``hood train-decoder``: train the heatmap decoder on a frozen classifier."""

from __future__ import annotations

from typing import Annotated

import typer

from hood.cli.errors import err_console, handle_errors
from hood.cli.help import filled, with_default
from hood.cli.options import (
    CompileOpt,
    ConfigOpt,
    DataRootOpt,
    DatasetOpt,
    DeviceOpt,
    JsonOpt,
    OutOpt,
    QuietOpt,
    SeedOpt,
    SetOpt,
    StrictOpt,
    build_config,
    print_json,
    stdout,
)
from hood.cli.reporter import RichReporter

_resume: dict[str, str] = {}


def _hint() -> str | None:
    return f"continue with `hood train-decoder --resume {_resume['path']}`" if "path" in _resume else None


@filled()
@handle_errors(_hint)
def train_decoder(
    config: ConfigOpt = None,
    num_ood: Annotated[int | None, typer.Option("--num-ood", help=with_default("Auxiliary outliers to train on.", "decoder.num_ood"))] = None,
    num_id: Annotated[int | None, typer.Option("--num-id", help="ID training images used (default: all).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help=with_default("Decoder epochs.", "decoder.epochs"))] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help=with_default("Batch size.", "decoder.batch_size"))] = None,
    fw_layers: Annotated[int | None, typer.Option("--fw-layers", help=with_default("Stages the decoder reads (see above).", "decoder.fw_layers"))] = None,
    classifier: Annotated[str | None, typer.Option("--classifier", help="Classifier checkpoint (default: latest pretrain).")] = None,
    arch: Annotated[str | None, typer.Option("--arch", "-a", help=with_default("wrn40_2, torchvision:NAME, ...", "model.arch"))] = None,
    num_classes: Annotated[int | None, typer.Option("--num-classes", help="Classes of a torchvision or own model.")] = None,
    aux: Annotated[str | None, typer.Option("--aux", help=with_default("Outliers to learn from.", "data.aux"))] = None,
    dataset: DatasetOpt = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue this interrupted train-decoder run.")] = None,
    strict: StrictOpt = None,
    compile_: CompileOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    data_root: DataRootOpt = None,
    out: OutOpt = None,
    set_: SetOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train the heatmap decoder (features once, each outlier with its own prototype, exact min/max).

    The decoder reads the frozen classifier's features and learns to draw a
    blank heatmap for ID images and, for an auxiliary outlier (--aux: a name,
    folder or archive), what separates it from the nearest ID image of its
    predicted class.
    --fw-layers is how many of the classifier's feature maps it reads: 1, the
    penultimate features only (the paper); 2-4 add the 1-3 deepest stage maps
    as skip inputs, which learn faster at short budgets (the recommended
    configs use 4).

    {note}"""
    from hood.jobs.lookup import check_classifier, preflight
    from hood.jobs.resume import resume_target
    from hood.jobs.train_decoder import check_image_size
    from hood.jobs.train_decoder import train_decoder as run_job
    from hood.runs import create_run

    resumed, config = resume_target(resume, out, config, "train-decoder")
    if resumed is not None and classifier is None and resumed.info.get("classifier"):
        classifier = str(resumed.info["classifier"])  # the one it started with, not a newer pretrain run
    named = {
        "decoder.num_ood": num_ood, "decoder.num_id": num_id, "decoder.epochs": epochs,
        "decoder.batch_size": batch_size, "decoder.fw_layers": fw_layers, "model.classifier": classifier,
        "model.arch": arch, "model.num_classes": num_classes,
        "data.aux": aux, "data.id": dataset, "run.device": device, "run.compile": compile_, "run.seed": seed,
        "data.root": data_root, "run.out": out, "data.strict": strict,
    }
    cfg = build_config(config, named, set_)
    check_image_size(cfg)
    with RichReporter(quiet) as rep:
        check_classifier(cfg, rep)  # the classifier file first, before any run directory or data
        if not resumed:
            preflight(cfg, [cfg.data.id, cfg.data.aux])
        run = resumed or create_run(cfg, "train-decoder")
        _resume["path"] = str(run.path)
        result = run_job(cfg, rep, run)
    losses = result.info.get("losses", [])
    stuck = result.info.get("stuck_pixels") or {}
    if stuck.get("pixels"):  # shown with --quiet too: its heatmaps carry the same bright pattern on every image
        from hood.engine.heatmaps import stuck_warning

        retrain = f"train longer (more --epochs than {len(losses)}), or with another --seed"
        err_console.print(f"[yellow]warning:[/] {stuck_warning(stuck['pixels'], stuck['of'], retrain)}")
    if (refused := (result.info.get("noise_floor") or {}).get("refused")) is not None:  # with --quiet too
        err_console.print(f"[yellow]warning:[/] {refused}")
    if json_out:
        print_json({"run": str(result.path), "decoder": str(result.file("decoder.pt")), "losses": losses,
                    "stuck_pixels": stuck.get("pixels")})
    else:
        stdout.print(f"decoder: [bold]{result.file('decoder.pt')}[/]  {len(losses)} epochs, final loss {losses[-1]:.4f}" if losses else f"decoder: {result.file('decoder.pt')}")
    err_console.print(f"[dim]run directory: {result.path}[/]")

"""``hood train-decoder``: train the heatmap decoder on a frozen classifier."""

from __future__ import annotations

from typing import Annotated

import typer

from hood.cli.errors import err_console, handle_errors
from hood.cli.options import (
    ConfigOpt,
    DataRootOpt,
    DeviceOpt,
    JsonOpt,
    OutOpt,
    QuietOpt,
    SeedOpt,
    SetOpt,
    build_config,
    print_json,
    stdout,
)
from hood.cli.reporter import RichReporter

_resume: dict[str, str] = {}


def _hint() -> str | None:
    return f"continue with `hood train-decoder --resume {_resume['path']}`" if "path" in _resume else None


@handle_errors(_hint)
def train_decoder(
    config: ConfigOpt = None,
    num_ood: Annotated[int | None, typer.Option("--num-ood", help="Auxiliary outliers sampled for training.")] = None,
    num_id: Annotated[int | None, typer.Option("--num-id", help="ID training images used (default: all).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Decoder epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Batch size.")] = None,
    fw_layers: Annotated[int | None, typer.Option("--fw-layers", help="1 = features only; 2-4 add that many minus one classifier stage maps as skips.")] = None,
    ood_views: Annotated[int | None, typer.Option("--ood-views", help="Outlier augmentation: 1 = as sampled (the paper); V adds V-1 seeded crop+flip copies of each outlier, one drawn per epoch.")] = None,
    id_views: Annotated[int | None, typer.Option("--id-views", help="ID augmentation: 1 = as sampled (the paper); V adds V-1 seeded crop+flip copies of each ID image (target h = 0), one drawn per epoch.")] = None,
    classifier: Annotated[str | None, typer.Option("--classifier", help="Classifier checkpoint (hood's or the authors' layout; a state dict with --arch torchvision:NAME or module:FILE.py:FUNC); default: the latest pretrain run.")] = None,
    arch: Annotated[str | None, typer.Option("--arch", "-a", help="Classifier architecture: resnet18 | wrn40_2 | resnet50, torchvision:NAME (e.g. torchvision:resnet18) or module:FILE.py:FUNCTION (your builder, called with the class count).")] = None,
    num_classes: Annotated[int | None, typer.Option("--num-classes", help="Classes of a torchvision:/module: classifier (default: read off its weights).")] = None,
    aux: Annotated[str | None, typer.Option("--aux", help="Auxiliary outlier set: a registry name, folder or archive.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="ID data set (overrides the config).")] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue an interrupted train-decoder run directory from its last saved epoch (same outliers, same classifier).")] = None,
    strict: Annotated[bool | None, typer.Option("--strict/--no-strict", help="Unreadable images are fatal instead of skipped and counted.")] = None,
    compile_: Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile the training forward passes (worth it for long GPU runs).")] = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    data_root: DataRootOpt = None,
    out: OutOpt = None,
    set_: SetOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train the heatmap decoder (features once, each outlier with its own prototype, exact min/max)."""
    from hood.jobs.common import check_classifier, preflight, resume_target
    from hood.jobs.train_decoder import check_image_size, check_synthetic_outliers
    from hood.jobs.train_decoder import train_decoder as run_job
    from hood.runs import create_run

    resumed, config = resume_target(resume, out, config, "train-decoder")
    if resumed is not None and classifier is None and resumed.info.get("classifier"):
        classifier = str(resumed.info["classifier"])  # the one it started with, not a newer pretrain run
    named = {
        "decoder.num_ood": num_ood, "decoder.num_id": num_id, "decoder.epochs": epochs,
        "decoder.batch_size": batch_size, "decoder.fw_layers": fw_layers, "decoder.ood_views": ood_views,
        "decoder.id_views": id_views, "model.classifier": classifier, "model.arch": arch, "model.num_classes": num_classes,
        "data.aux": aux, "data.id": dataset, "run.device": device, "run.compile": compile_, "run.seed": seed,
        "data.root": data_root, "run.out": out, "data.strict": strict,
    }
    cfg = build_config(config, named, set_)
    check_image_size(cfg)
    check_synthetic_outliers(cfg)
    with RichReporter(quiet) as rep:
        check_classifier(cfg, rep)  # the classifier file first, before any run directory or data
        if not resumed:
            preflight(cfg, [cfg.data.id, cfg.data.aux])
        run = resumed or create_run(cfg, "train-decoder")
        _resume["path"] = str(run.path)
        result = run_job(cfg, rep, run)
    losses = result.info.get("losses", [])
    if json_out:
        print_json({"run": str(result.path), "decoder": str(result.file("decoder.pt")), "losses": losses})
    else:
        stdout.print(f"decoder: [bold]{result.file('decoder.pt')}[/]  {len(losses)} epochs, final loss {losses[-1]:.4f}" if losses else f"decoder: {result.file('decoder.pt')}")
    err_console.print(f"[dim]run directory: {result.path}[/]")

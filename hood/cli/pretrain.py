"""``hood pretrain``: train the classifier."""

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
    bundled_configs,
    print_json,
    stdout,
)
from hood.cli.reporter import RichReporter

_resume: dict[str, str] = {}


def _hint() -> str | None:
    return f"continue with `hood pretrain --resume {_resume['path']}`" if "path" in _resume else None


@filled()
@handle_errors(_hint)
def pretrain(
    config: ConfigOpt = None,
    dataset: DatasetOpt = None,
    arch: Annotated[str | None, typer.Option("--arch", "-a", help=with_default("resnet18, wrn40_2, resnet50, ...", "model.arch"))] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help=with_default("Training epochs.", "pretrain.epochs"))] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help=with_default("Batch size.", "pretrain.batch_size"))] = None,
    lr: Annotated[float | None, typer.Option("--lr", help=with_default("Learning rate.", "pretrain.lr"))] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue this interrupted pretrain run.")] = None,
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
    """Train a classifier on the ID set; keeps the best checkpoint by validation accuracy.

    The ID data set is a registry name (cifar10, cifar100, tinyimagenet),
    demo-digits, or a folder or archive with train/ and test/.

    {note}"""
    from hood.jobs.lookup import preflight
    from hood.jobs.pretrain import pretrain as run_pretrain
    from hood.jobs.resume import resume_target
    from hood.runs import create_run

    resumed, config = resume_target(resume, out, config, "pretrain")
    if config is None and dataset and arch and f"{dataset}_{arch}" in bundled_configs():
        config = f"{dataset}_{arch}"
    named = {
        "data.id": dataset, "model.arch": arch, "pretrain.epochs": epochs, "pretrain.batch_size": batch_size,
        "pretrain.lr": lr, "run.device": device, "run.compile": compile_, "run.seed": seed, "data.root": data_root, "run.out": out,
        "data.strict": strict,
    }
    cfg = build_config(config, named, set_)
    if not resumed:
        preflight(cfg, [cfg.data.id])  # a missing data set must not leave a half-made run behind
    run = resumed or create_run(cfg, "pretrain")
    _resume["path"] = str(run.path)
    with RichReporter(quiet) as rep:
        result = run_pretrain(cfg, rep, run)
    info = result.info
    if json_out:
        print_json({"run": str(result.path), "test_acc": info.get("test_acc"), "best_val_acc": info.get("best_val_acc"), "best_epoch": info.get("best_epoch")})
    else:
        stdout.print(f"classifier: [bold]{result.file('classifier.pt')}[/]  test accuracy {info['test_acc'] * 100:.2f}%  (best val {info['best_val_acc'] * 100:.2f}% at epoch {info['best_epoch']})")
    err_console.print(f"[dim]run directory: {result.path}[/]")

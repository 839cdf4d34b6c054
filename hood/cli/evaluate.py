"""``hood evaluate``: the OOD table for the ID test set against every OOD set."""

from __future__ import annotations

from typing import Annotated

import typer

from hood.cli.errors import err_console, handle_errors
from hood.cli.options import (
    ConfigOpt,
    DataRootOpt,
    DeviceOpt,
    JsonOpt,
    QuietOpt,
    SeedOpt,
    SetOpt,
    build_config,
    print_json,
    stdout,
)
from hood.cli.render import results_table
from hood.cli.reporter import RichReporter


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


@handle_errors()
def evaluate(
    config: ConfigOpt = None,
    run: Annotated[str | None, typer.Option("--run", help="train-decoder run directory (default: the latest complete one for the config), or an earlier evaluate run to reuse its cached fits.")] = None,
    ood: Annotated[str | None, typer.Option("--ood", help="Comma-separated OOD sets: registry names, built-ins (uniform-noise, gaussian-noise, blobs), folders or archives.")] = None,
    ood_count: Annotated[int | None, typer.Option("--ood-count", help="Images per OOD set (default: len(ID test)/5, the protocol).")] = None,
    methods: Annotated[str | None, typer.Option("--methods", help="Comma-separated detectors: heatmap, heatmap+energy, heatmap+knn, heatmap+vim, heatmap+mahalanobis, heatmap+vim+mahalanobis, msp, energy, maxlogit, odin, mahalanobis, knn, react, vim; or 'all' (default: heatmap,msp,energy,knn). Parameters: --set evaluate.knn_k=50, odin_temperature, odin_epsilon, react_percentile, vim_dim, partner_weight (heatmap+X = z_heatmap + w z_X, w on each partner), fusion=tail (sum -log ID tail probabilities instead), tail_fraction.")] = None,
    fpr_convention: Annotated[str | None, typer.Option("--fpr-convention", help="id (the paper: ID positive) | ood (OpenOOD).")] = None,
    classifier: Annotated[str | None, typer.Option("--classifier", help="Classifier checkpoint (default: the one the decoder was trained on).")] = None,
    arch: Annotated[str | None, typer.Option("--arch", "-a", help="Classifier architecture, as given to train-decoder (e.g. torchvision:resnet18).")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="ID data set (overrides the config).")] = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    data_root: DataRootOpt = None,
    strict: Annotated[bool | None, typer.Option("--strict/--no-strict", help="Unreadable images are fatal instead of skipped and counted.")] = None,
    validation: Annotated[bool, typer.Option("--validation", help="Score the run's validation split instead of the test sets: the ID training images and auxiliary classes train-decoder held out (data.val_id_per_class or data.val_id_source=classifier, data.val_aux_classes), plus a fresh draw of any synthetic set (uniform-noise, gaussian-noise, blobs) in --ood; writes validation.json.")] = False,
    set_: SetOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Score ID and OOD test sets; print FPR95 / AUROC / AUPR-In / AUPR-Out and write results.json/.csv."""
    from hood.jobs.evaluate import evaluate as run_job

    named = {
        "data.ood": _csv(ood), "data.ood_count": ood_count, "evaluate.methods": _csv(methods),
        "evaluate.fpr_convention": fpr_convention, "model.classifier": classifier, "model.arch": arch, "data.id": dataset,
        "run.device": device, "run.seed": seed, "data.root": data_root, "data.strict": strict,
        "evaluate.validation": True if validation else None,
    }
    cfg = build_config(config, named, set_)
    with RichReporter(quiet) as rep:
        result = run_job(cfg, run, rep)
    if json_out:
        print_json(result.results)
    else:
        stdout.print(results_table(result.results))
    written = "validation.json" if "validation" in result.results else "results.json"
    err_console.print(f"[dim]results: {result.run.file(written)}[/]")

"""``hood evaluate``: the OOD table for the ID test set against every OOD set."""

from __future__ import annotations

from typing import Annotated

import typer

from hood.cli.errors import err_console, handle_errors
from hood.cli.help import default_of, filled, with_default
from hood.cli.options import (
    ConfigOpt,
    DataRootOpt,
    DatasetOpt,
    DeviceOpt,
    JsonOpt,
    QuietOpt,
    SeedOpt,
    SetOpt,
    StrictOpt,
    build_config,
    print_json,
    stdout,
)
from hood.cli.render import localization_tables, results_table
from hood.cli.reporter import RichReporter
from hood.config import Config


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _benchmark_named(name: str | None, ood: str | None, fpr_convention: str | None) -> dict[str, str]:
    """The config values ``--benchmark NAME`` sets: its name, and its own FPR convention unless one is named."""
    if name is None:
        return {}
    from hood.data import benchmarks

    bench = benchmarks.get(name.strip())
    if ood is not None:
        raise benchmarks.BenchmarkError(f"--benchmark {bench.name} fixes the OOD sets; drop --ood, or drop --benchmark")
    return {"evaluate.benchmark": bench.name, "evaluate.fpr_convention": fpr_convention or bench.fpr_convention}


@filled(ood=default_of("data.ood"), methods=default_of("evaluate.methods"))
@handle_errors()
def evaluate(
    config: ConfigOpt = None,
    run: Annotated[str | None, typer.Option("--run", help="train-decoder or evaluate run (default: latest).")] = None,
    ood: Annotated[str | None, typer.Option("--ood", help="OOD sets, comma-separated: names, folders, archives.")] = None,
    benchmark: Annotated[str | None, typer.Option("--benchmark", help="A named protocol in place of --ood, or list (see above).")] = None,
    ood_count: Annotated[int | None, typer.Option("--ood-count", help="Images per set (default: ID test/5).")] = None,
    methods: Annotated[str | None, typer.Option("--methods", help="Detectors, or all (see above).")] = None,
    fpr_convention: Annotated[str | None, typer.Option("--fpr-convention", help=with_default("id (the paper) or ood (see above).", "evaluate.fpr_convention"))] = None,
    classifier: Annotated[str | None, typer.Option("--classifier", help="Classifier (default: the decoder's own).")] = None,
    arch: Annotated[str | None, typer.Option("--arch", "-a", help="Classifier architecture (default: the run's).")] = None,
    dataset: DatasetOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    data_root: DataRootOpt = None,
    strict: StrictOpt = None,
    validation: Annotated[bool, typer.Option("--validation", help="Score the validation split instead (see above).")] = False,
    localization: Annotated[bool, typer.Option("--localization", help="Where heatmaps point, on composites (see above).")] = False,
    set_: SetOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Score ID and OOD test sets; print FPR95 / AUROC / AUPR-In / AUPR-Out and write results.json/.csv.

    --methods, comma-separated (default: {methods}): heatmap (the
    paper's), heatmap+vim+scale (the recommended), heatmap+vim, msp, energy,
    maxlogit, odin, gen, mahalanobis, knn, react, vim, ash, scale, fdbd,
    nac, nci, rmds, adascale.
    Their parameters are evaluate.params, by the names their constructors
    give them (--set evaluate.params.knn.k=50).

    --fpr-convention id (the paper's): FPR95 is the share of OOD images
    accepted at the threshold that keeps 95% of the ID images; ood (OpenOOD's):
    the share of ID images rejected at the threshold that catches 95% of OOD.

    --benchmark NAME scores a named protocol (paper-cifar10, paper-cifar100,
    paper-tinyimagenet, openood-cifar10, openood-cifar100; --benchmark list
    shows them): its ID test rows, OOD sets and rows, per-set rows and each
    group's mean (near, far), in its own FPR convention unless --fpr-convention
    names one. hood download NAME fetches what it reads (docs/benchmarks.md).

    --ood, comma-separated (default: {ood}):
    registry names, the built-ins uniform-noise, gaussian-noise and blobs,
    folders or archives. A set larger than --ood-count is drawn at random with
    data.ood_draw_seed, the same images for every method (--set
    data.ood_draw=first keeps the paper's first images). An earlier evaluate
    run given as --run reuses its cached fits.

    --validation scores the validation split: ID images the classifier never
    saw (data.val_id_source=test, a random half of the ID test split whose
    other half the test table scores; or =classifier, the images hood pretrain
    held out) against the outlier classes train-decoder held out
    (data.val_aux_classes), a fresh draw of each built-in set in --ood and the
    sets of data.val_ood (validation sets that are not test sets, e.g. far-OOD
    ones); writes validation.json. On half of the ID test split the baselines
    need no decoder run.

    --localization pastes a region of each OOD set's images into ID images
    (10-50% of the image, rectangles and blobs) and reports how well each pixel
    map finds the region (pixel AUROC, AUPRO: the heatmap as drawn and
    smoothed, the energy score's input gradient, the distance to the class's
    mean image, and a centre prior that sees no image: the line to clear),
    and how well each method detects the composites; writes
    localization.json and localization.png (with --validation: on the
    validation split).

    The run's ID set, auxiliary outliers, image size and classifier apply
    unless named (-d, -a, --classifier, --set); -c says how to evaluate.

    {note}"""
    from hood.cli.runcfg import latest_decoder_run, with_run_data
    from hood.detectors import uses_decoder
    from hood.jobs.detectors import resolve_methods
    from hood.jobs.evaluate import evaluate as run_job

    if benchmark is not None and benchmark.strip().lower() == "list":
        from hood.cli.benchmarks import benchmark_rows, print_benchmarks
        from hood.data.registry import resolve_root

        return print_json(benchmark_rows(resolve_root(data_root))) if json_out else print_benchmarks(resolve_root(data_root))
    named = {
        "data.ood": _csv(ood), "data.ood_count": ood_count, "evaluate.methods": _csv(methods),
        "evaluate.fpr_convention": fpr_convention, "model.classifier": classifier, "model.arch": arch, "data.id": dataset,
        "run.device": device, "run.seed": seed, "data.root": data_root, "data.strict": strict,
        "evaluate.validation": True if validation else None,
        **_benchmark_named(benchmark, ood, fpr_convention),  # last: its convention where none is named
    }
    cfg = build_config(config, named, set_)
    reads_decoder = localization or uses_decoder(resolve_methods(cfg.evaluate.methods))  # --localization: always
    source = run or (latest_decoder_run(cfg) if reads_decoder else None)
    cfg = with_run_data(cfg, source, named, set_)  # the data and classifier the run was trained on
    if localization:
        _localization(cfg, source, json_out, quiet)
        return
    with RichReporter(quiet) as rep:
        result = run_job(cfg, run, rep)
    if json_out:
        print_json(result.results)
    else:
        stdout.print(results_table(result.results))
    written = "validation.json" if "validation" in result.results else "results.json"
    err_console.print(f"[dim]results: {result.run.file(written)}[/]")


def _localization(cfg: Config, run: str | None, json_out: bool, quiet: bool) -> None:
    import io

    from hood.fileio import atomic_write_bytes
    from hood.jobs.localization import file_name, localize
    from hood.viz import localization_figure

    with RichReporter(quiet) as rep:
        result = localize(cfg, run, rep)
    buf = io.BytesIO()
    localization_figure(result.examples).save(buf, format="PNG")
    picture = result.run.file(file_name(cfg.evaluate.validation)).with_suffix(".png")
    atomic_write_bytes(picture, buf.getvalue())
    if json_out:
        print_json(result.results)
    else:
        stdout.print(localization_tables(result.results))
    for note in result.results.get("notes", []):
        err_console.print(f"[dim]note: {note}[/]")
    err_console.print(f"[dim]results: {result.run.file(file_name(cfg.evaluate.validation))}; picture: {picture}[/]")

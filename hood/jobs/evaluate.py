"""``hood evaluate``: score the ID test set and each OOD set with every requested method.

The classifier runs once per data set and every detector reads the same :class:`FeatureSet` (ODIN, NAC and
AdaSCALE re-run it, because they perturb the input or differentiate through the classifier). A combination (``heatmap+vim``) is arithmetic on its parts'
score arrays, which are computed once whether or not their own methods were asked for, so ``--methods all``
runs the decoder once per image. Detectors that learn from ID data fit once on the ID training features and
cache the fit in the run directory (:mod:`hood.jobs.fits`), so a later evaluate of the same run skips the
ID-train pass; the first one reads the features train-decoder kept of its own ID rows (:mod:`hood.jobs.id_features`)
and runs the classifier on the others. OOD sets are streamed: one is loaded, featurized, scored and released before
the next, so memory does not grow with their number. A set larger than its count is a draw of its rows by
``data.ood_draw`` (:mod:`hood.data.draw`), the same rows for every method, recorded in ``results.json``.
What the run keeps (the table, the thresholds ``hood score`` reads, the per-sample scores) is written by
:mod:`hood.jobs.results`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hood.config import Config
from hood.data.benchmarks import Benchmark
from hood.data.draw import draw
from hood.data.images import ImageSet
from hood.data.sources import load_id_splits
from hood.detectors import Combination, Detector, all_methods, uses_decoder
from hood.detectors.combined import fit_rows
from hood.engine.features import FeatureSet, extract_features
from hood.engine.runtime import configure_threads, resolve_device, seed_everything
from hood.errors import ConfigError, RunError
from hood.jobs.benchmark import add_groups, benchmark_plan, open_benchmark
from hood.jobs.constant import ConstantScores, decoder_notes
from hood.jobs.detectors import build_detectors, check_fit_rows, method_settings, resolve_methods
from hood.jobs.fits import fit_key, load_fit, save_fit
from hood.jobs.id_features import FILE, feature_key, read_id_features
from hood.jobs.lookup import (
    check_given_files,
    check_set_names,
    data_root,
    decoder_run,
    open_classifier,
    open_decoder,
    preflight,
    run_classifier,
    skip_note,
)
from hood.jobs.plan import Plan, cap_fit, test_plan
from hood.jobs.results import begin_results, measured_on, save_scores, write_results
from hood.jobs.validation import validation_plan
from hood.locks import holds_locks
from hood.metrics import CONVENTION_CAPTION, id_threshold, mean_metrics, ood_metrics
from hood.models.checkpoint import LoadedClassifier
from hood.progress import NullReporter, Reporter
from hood.runs import Run, create_run, lock_run, open_run

THRESHOLD_KEEP = 0.95  # the verdict threshold keeps this share of ID test images


@dataclass
class Evaluation:
    run: Run
    results: dict[str, Any]


def lock_for_writing(run: Run) -> Run:
    """``run``, locked: evaluate (and ``--localization``) write scores, fits and results into it, one writer at a time."""
    lock_run(run.path, "evaluate")
    return run


def _target_run(run_path: str | None, cfg: Config, methods: list[str], reporter: Reporter) -> tuple[Run | None, list[str]]:
    """The run to write into: a train-decoder run (needed by the heatmap methods), a previous evaluate run given
    with ``--run`` (its cached fits are reused), or None (a fresh evaluate run is made later)."""
    if run_path:
        run = open_run(run_path)
        if run.info.get("command") == "evaluate":
            if uses_decoder(methods):
                need = ", ".join(m for m in methods if uses_decoder([m]))
                raise RunError(f"{run_path} is an evaluate run without a decoder; {need} needs a train-decoder run")
            return lock_for_writing(run), methods
        return lock_for_writing(decoder_run(run_path, cfg, reporter)), methods
    if not uses_decoder(methods):
        return None, methods
    try:
        return lock_for_writing(decoder_run(None, cfg, reporter)), methods
    except RunError:
        if methods == all_methods():  # --methods all without a decoder: the baselines alone
            reporter.log("no train-decoder run found; evaluating the baselines without heatmap")
            return None, [m for m in methods if not uses_decoder([m])]
        raise


def fit_detectors(detectors: dict[str, Detector], combos: dict[str, Combination], run: Run, model: torch.nn.Module, plan: Plan,
         fingerprint: str, cfg: Config, device: torch.device, reporter: Reporter) -> dict[str, dict[str, Any]]:
    """Fit what needs fitting, from the run's cache where its key matches; else one ID-train pass. A
    combination fits its parts' ID statistics on rows the decoder never trained on (:func:`fit_rows`).
    Returns each fitted method's cache key (recorded with the thresholds)."""
    train = plan.fit
    keys: dict[str, dict[str, Any]] = {}
    todo: list[str] = []
    for m, d in detectors.items():
        if d.needs_fit:
            keys[m] = fit_key(m, d.settings(), fingerprint, cfg, len(train), **(plan.fit_draw or {}))
            if load_fit(run, d, keys[m]) is None:
                todo.append(m)
            else:
                reporter.log(f"{m}: fit on ID train loaded from {run.path / 'fits'}")
    rows = fit_rows(len(train), plan.decoder_rows, cfg.run.seed) if combos else None
    todo_combos = []
    for m, c in combos.items():
        settings = {"parts": {p: detectors[p].settings() for p in c.parts}}
        keys[m] = fit_key(m, settings, fingerprint, cfg, len(train), rows=len(rows), seed=cfg.run.seed,  # type: ignore[arg-type]
                          **(plan.fit_draw or {}))
        if load_fit(run, c, keys[m]) is None:
            todo_combos.append(m)
        else:
            reporter.log(f"{m}: fit on ID train loaded from {run.path / 'fits'}")
    for m in [m for m in todo if detectors[m].needs_images]:  # they run the classifier on a draw of the images
        reporter.log(f"{m}: fitting on ID train images")
        detectors[m].fit_on_images(train.images, train.labels)
        save_fit(run, detectors[m], keys[m])
    todo = [m for m in todo if not detectors[m].needs_images]
    if not todo and not todo_combos:
        return keys
    reporter.log(f"{', '.join(todo + todo_combos)}: fitting on {len(train):,} ID training images, cached in the run for "
                 f"later calls (evaluate.fit_count draws fewer)")
    # the stage maps (a skip-input decoder's) of the rows the combinations read, not of every training image (gigabytes)
    num_maps = max((detectors[p].num_maps for m in todo_combos for p in combos[m].parts), default=0)
    feats = _id_train_features(run, model, plan, feature_key(fingerprint, cfg, device), num_maps, rows if num_maps else None,
                               cfg, device, reporter)
    for m in todo:
        detectors[m].fit_features(feats)
        save_fit(run, detectors[m], keys[m])
    if todo_combos:
        held = feats.take(rows)  # type: ignore[arg-type]
        parts = dict.fromkeys(p for m in todo_combos for p in combos[m].parts)
        scores = {p: detectors[p].score_features(held) for p in parts}
        for m in todo_combos:
            combos[m].fit_scores(scores)
            save_fit(run, combos[m], keys[m])
    return keys


def _id_train_features(run: Run, model: torch.nn.Module, plan: Plan, key: dict[str, Any], num_maps: int,
                       map_rows: torch.Tensor | None, cfg: Config, device: torch.device, reporter: Reporter) -> FeatureSet:
    """The features of the fit rows (stage maps of ``map_rows`` alone): those the decoder run kept are read from its
    file (:mod:`hood.jobs.id_features`), the classifier runs on the others."""
    train, batch = plan.fit, cfg.evaluate.batch_size
    saved = read_id_features(run, key, train.images, plan.fit_rows, reporter)
    if saved is not None and num_maps:  # the file holds no maps: rows whose maps are read run again
        saved = None if map_rows is None else saved.without(map_rows)
    if saved is None or not len(saved):
        return extract_features(model, train.images, device, batch, num_maps, train.labels, reporter, "ID train features", map_rows)
    reporter.log(f"features of {len(saved):,} of the {len(train):,} ID training rows read from the decoder run "
                 f"({FILE}, computed by train-decoder)")
    others = saved.others(len(train))
    part = None
    if len(others):
        local = None if map_rows is None else torch.searchsorted(others, torch.unique(map_rows.to(torch.long)))
        part = extract_features(model, train.images, device, batch, num_maps, None, reporter, "ID train features", local,
                                rows=others)
    return saved.join(part, others, train.labels)


def score_set(detectors: dict[str, Detector], combos: dict[str, Combination], feats: FeatureSet, images: torch.Tensor,
           seconds: dict[str, float]) -> dict[str, np.ndarray]:
    """Every detector's scores of one set, then every combination's of those; ``seconds`` gains each one's time."""
    out: dict[str, np.ndarray] = {}
    for m, d in detectors.items():
        start = time.perf_counter()
        out[m] = np.asarray(d.score_images(images) if d.needs_images else d.score_features(feats), dtype=np.float64)
        seconds[m] = seconds.get(m, 0.0) + time.perf_counter() - start
    for m, c in combos.items():
        start = time.perf_counter()
        out[m] = c.combine(out)
        seconds[m] = seconds.get(m, 0.0) + time.perf_counter() - start
    return out


def evaluation_plan(cfg: Config, splits: dict[str, ImageSet], meta: dict[str, Any], classifier: LoadedClassifier,
                    clf_path: Path, run: Run, bench: Benchmark | None, reporter: Reporter) -> Plan:
    """What an evaluation scores and fits on: ``bench``'s sets, the validation split (``--validation``) or the test
    sets. The ID training rows the decoder saw (``meta``, of this ID set only) are kept out of the combinations'
    statistics, and the fits read a seeded draw of ``evaluate.fit_count`` rows of a larger training split. Shared
    by evaluate and ``--localization``, so both fit on the same rows and cache their fits under the same keys."""
    root, size, validating = data_root(cfg), cfg.data.image_size, cfg.evaluate.validation
    decoder_rows = meta.get("id_rows") if meta.get("id_dataset") == cfg.data.id else None
    if bench is not None:
        plan = benchmark_plan(bench, cfg, splits, decoder_rows, root, size, validating)
    elif validating:
        plan = validation_plan(cfg, splits, decoder_rows, meta.get("config", {}), root, size, classifier.meta, str(clf_path), run.path)
    else:
        plan = test_plan(cfg, splits, decoder_rows, root, size)
    cap_fit(plan, cfg.evaluate.fit_count, cfg.data.ood_draw_seed)
    if plan.fit_draw:
        reporter.log(f"the fits read a seeded draw of {len(plan.fit):,} of the {plan.fit_draw['fit_of']:,} ID training "
                     f"images (evaluate.fit_count)")
    return plan


@holds_locks  # the run it writes is locked until it returns
def evaluate(cfg: Config, run_path: str | None = None, reporter: Reporter | None = None) -> Evaluation:
    reporter = reporter or NullReporter()
    device = resolve_device(cfg.run.device)
    configure_threads(cfg.run.num_threads)
    methods = resolve_methods(cfg.evaluate.methods)
    validating = cfg.evaluate.validation
    check_set_names(cfg, validating, required=cfg.evaluate.benchmark is None)  # every set's scores under a name of their own
    check_given_files(cfg, reporter)  # a named --classifier is checked before runs or data are looked up
    bench = open_benchmark(cfg, validating, data_root(cfg))  # a named protocol's sets replace data.ood; all installed
    needed = bench.needs(validating) if bench else [cfg.data.id] + ([] if validating else cfg.data.ood)
    if run_path is None:
        preflight(cfg, needed)  # every missing set named at once, before looking for runs
    run, methods = _target_run(run_path, cfg, methods, reporter)  # a named run another command writes: refused here
    if run_path is not None:
        preflight(cfg, needed)
    clf_path = run_classifier(cfg, run, reporter)
    has_decoder = run is not None and run.file("decoder.pt").is_file()
    # half of the ID test split needs no decoder run; the classifier's held-out images are what a decoder run held out
    if validating and bench is None and not has_decoder and cfg.data.val_id_source == "classifier":
        raise ConfigError("--validation on the classifier's held-out images scores a train-decoder run that left them out; "
                          "name it with --run RUN, or validate on half of the ID test split with --set data.val_id_source=test")
    created = run is None
    if run is None:
        run = create_run(cfg, "evaluate")
        run.update(classifier=str(Path(clf_path).resolve()))
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    size = cfg.data.image_size

    splits = load_id_splits(cfg.data.id, data_root(cfg), size, cfg.data.strict)
    classifier = open_classifier(clf_path, cfg, num_classes=len(splits["train"].classes or []))
    model = classifier.model.to(device)
    decoder, meta = None, {}
    if uses_decoder(methods) or (validating and has_decoder):
        decoder, meta = open_decoder(run, classifier, size)
    plan = evaluation_plan(cfg, splits, meta, classifier, clf_path, run, bench, reporter)
    detectors, combos = build_detectors(methods, model, cfg, device, decoder)
    check_fit_rows(detectors, len(plan.fit))  # before results.json is marked as being rewritten
    num_maps = max(d.num_maps for d in detectors.values())
    seconds: dict[str, float] = {}

    if not validating:
        begin_results(run)  # score and visualize refuse this run until write_results
    fits = fit_detectors(detectors, combos, run, model, plan, classifier.fingerprint, cfg, device, reporter)
    del splits
    id_test = plan.id
    id_feats = extract_features(model, id_test.images, device, cfg.evaluate.batch_size, num_maps, id_test.labels, reporter, "ID test features")
    acc = float((id_feats.preds == id_test.labels).float().mean()) if id_test.labels is not None else None
    id_scores = score_set(detectors, combos, id_feats, id_test.images, seconds)
    constant = ConstantScores()  # methods that score every image of a set the same: named under the table
    constant.add("id", id_scores)
    for m in methods:
        save_scores(run, m, f"{plan.prefix}id", id_scores[m], plan.id_rows)
    del id_feats

    per_method: dict[str, dict[str, dict[str, float]]] = {m: {} for m in methods}
    notes = []
    drawn: dict[str, dict[str, int]] = {}
    for name, load in plan.ood:
        ood = load()
        if note := skip_note(ood):
            notes.append(note)
            reporter.log(note)
        size_before = len(ood)
        ood, rows = draw(ood, plan.ood_count, cfg.data.ood_draw, cfg.data.ood_draw_seed)
        drawn[name] = {"count": len(ood), "size": size_before}
        feats = extract_features(model, ood.images, device, cfg.evaluate.batch_size, num_maps, None, reporter, f"{name} features")
        scores = score_set(detectors, combos, feats, ood.images, seconds)
        constant.add(name, scores)
        for m in methods:
            save_scores(run, m, f"{plan.prefix}{name}", scores[m], rows)
            per_method[m][name] = {**ood_metrics(id_scores[m], scores[m], cfg.evaluate.fpr_convention), "n": len(scores[m])}
        del ood, feats

    results = _results(cfg, plan, methods, per_method, id_scores, detectors, combos, fits, seconds, drawn, notes, str(clf_path),
                       classifier.arch, acc)
    if plan.benchmark is not None:
        add_groups(results, plan.benchmark)
    results["threshold_context"] = {m: measured_on(classifier.fingerprint, cfg.data.id, size) for m in methods}
    constant.record(results, methods, combos)
    results["notes"] += decoder_notes(run.info, methods)  # stuck pixels, a floor not applied: said beside the figures
    write_results(run, results, validation=validating)
    if validating:
        if created:  # a fresh run that only validated (the baselines on half of the ID test split) is done
            run.mark_complete()
    elif run.info.get("command") == "evaluate":
        run.mark_complete()
    else:
        run.update(evaluated=True)
    return Evaluation(run, results)


def _results(cfg: Config, plan: Plan, methods: list[str], per_method: dict[str, dict[str, dict[str, float]]],
             id_scores: dict[str, np.ndarray], detectors: dict[str, Detector], combos: dict[str, Combination],
             fits: dict[str, dict[str, Any]], seconds: dict[str, float], drawn: dict[str, dict[str, int]], notes: list[str],
             classifier: str, arch: str, acc: float | None) -> dict[str, Any]:
    """What results.json (or validation.json) holds: the schema of :mod:`hood.jobs.results`."""
    id_draw = {"count": len(plan.id), "size": plan.id_size, **(plan.id_half or {})}
    results: dict[str, Any] = {
        "id_dataset": f"{cfg.data.id} (validation split)" if plan.validation else cfg.data.id,
        "classifier": classifier,
        "classifier_arch": arch,
        "id_test_accuracy": acc,
        "n_id": len(plan.id),
        "methods": methods,
        "fpr_convention": cfg.evaluate.fpr_convention,
        "caption": CONVENTION_CAPTION[cfg.evaluate.fpr_convention],
        "results": {
            m: {**per_set, "mean": {**mean_metrics(per_set), "n": sum(int(v["n"]) for v in per_set.values())}}
            for m, per_set in per_method.items() if per_set
        },
        "thresholds": {m: id_threshold(id_scores[m], THRESHOLD_KEEP) for m in methods},
        # what each threshold was set under: every parameter its scores depend on, and its fit (hood score refuses
        # the threshold under other settings or beside another fit)
        "threshold_settings": {m: method_settings(m, detectors, combos) for m in methods},
        "fits": fits,
        "threshold_rule": f"OOD score above which an image is called out; keeps {THRESHOLD_KEEP:.0%} of ID test images",
        "score_seconds": {m: round(seconds.get(m, 0.0) + sum(seconds.get(p, 0.0) for p in combos[m].parts if p not in methods), 3)
                          if m in combos else round(seconds.get(m, 0.0), 3) for m in methods},
        # which images were scored: every method and every decoder seed reads the same rows (scores/*.npz hold them)
        "draw": {"mode": cfg.data.ood_draw, "seed": cfg.data.ood_draw_seed, "id": id_draw, "ood": drawn,
                 **({"fit": plan.fit_draw} if plan.fit_draw else {})},
        "notes": notes,
    }
    if plan.validation:
        results["validation"] = plan.validation
    return results

"""``hood evaluate``: score the ID test set and each OOD set with every requested detector.

The classifier runs once per data set; every detector reads the same :class:`FeatureSet` (ODIN alone
re-runs the classifier, because it perturbs the input). The combinations share one instance of the
heatmap and of each partner with the methods of those names, and their scores go through the context's
memo, so ``--methods all`` runs the decoder once per image, not once per method that reads it (a
combination's ``score_seconds`` is what it adds to the parts scored before it). Detectors that learn from ID data fit once on
the ID training features and cache the fit in the run directory (``fits/<method>.pt``, keyed by the
classifier's fingerprint, the ID set and the detector's parameters), so a later evaluate of the same run
skips the ID-train pass. OOD sets are streamed: one is loaded, featurized, scored and released before
the next, so memory does not grow with their number. A set larger than its count (``data.ood_count``,
``data.id_test_count``) is a draw of its rows by ``data.ood_draw`` (:mod:`hood.data.draw`), the same
rows for every method, recorded in ``results.json``. Per-sample scores (and the rows they are of) go to
``scores/<method>/<set>.npz`` so metrics can be recomputed without a GPU; ``results.json`` /
``results.csv`` hold the table, and ``thresholds`` the score per method that keeps 95% of ID test
images (``hood score`` reads it).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hood.config import Config
from hood.data.builtin import SYNTHETIC_NAMES, VAL_NOISE_SEED, synthetic_set
from hood.data.draw import draw
from hood.data.images import ImageSet
from hood.data.sources import dataset_label, load_held_out_classes, load_id_splits, load_image_set
from hood.data.validation import id_test_halves, validation_rows
from hood.detectors import DETECTORS, NEEDS_DECODER, Detector, DetectorContext, all_methods, uses_decoder
from hood.engine.features import FeatureSet, extract_features
from hood.engine.runtime import configure_threads, resolve_device, seed_everything
from hood.errors import ConfigError, RunError
from hood.fileio import atomic_write_json, atomic_write_text
from hood.jobs.detectors import build_detectors
from hood.jobs.fits import fit_key, load_fit, save_fit
from hood.jobs.lookup import (
    check_classifier,
    check_given_files,
    data_root,
    decoder_run,
    decoder_train_ids,
    open_classifier,
    preflight,
    skip_note,
)
from hood.jobs.results import begin_results, save_scores, write_results
from hood.locks import holds_locks
from hood.metrics import CONVENTION_CAPTION, id_threshold, mean_metrics, ood_metrics
from hood.models.checkpoint import load_decoder
from hood.progress import NullReporter, Reporter
from hood.runs import Run, create_run, lock_run, open_run

THRESHOLD_KEEP = 0.95  # the verdict threshold keeps this share of ID test images


@dataclass
class Evaluation:
    run: Run
    results: dict[str, Any]


def resolve_methods(methods: list[str]) -> list[str]:
    """``all`` to every registered detector; unknown names are one error naming the known ones."""
    if "all" in methods:
        return all_methods()
    unknown = [m for m in methods if m not in DETECTORS]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], list(DETECTORS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown method '{unknown[0]}'{hint}; available: {', '.join(all_methods())}, or all")
    return list(dict.fromkeys(methods))


def results_csv(results: dict[str, Any]) -> str:
    """Tidy form: one row per (method, set, metric)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "set", "metric", "value"])
    for method, per_set in results["results"].items():
        for set_name, metrics in per_set.items():
            for k, v in metrics.items():
                w.writerow([method, set_name, k, v])
    return buf.getvalue()


def _locked(run: Run) -> Run:
    """Evaluate writes scores, fits and results into the run: one writer at a time."""
    lock_run(run.path, "evaluate")
    return run


def _target_run(run_path: str | None, cfg: Config, methods: list[str], reporter: Reporter) -> tuple[Run | None, list[str]]:
    """The run to write into: a train-decoder run (needed by ``heatmap`` and ``heatmap+vim``), a previous evaluate run given
    with ``--run`` (its cached fits are reused), or None (a fresh evaluate run is made later)."""
    if run_path:
        run = open_run(run_path)
        if run.info.get("command") == "evaluate":
            if uses_decoder(methods):
                need = ", ".join(m for m in methods if m in NEEDS_DECODER)
                raise RunError(f"{run_path} is an evaluate run without a decoder; {need} needs a train-decoder run")
            return _locked(run), methods
        return _locked(decoder_run(run_path, cfg, reporter)), methods
    if not uses_decoder(methods):
        return None, methods
    try:
        return _locked(decoder_run(None, cfg, reporter)), methods
    except RunError:
        if methods == all_methods():  # --methods all without a decoder: the baselines alone
            reporter.log("no train-decoder run found; evaluating the baselines without heatmap")
            return None, [m for m in methods if m not in NEEDS_DECODER]
        raise


def _fit_detectors(detectors: dict[str, Detector], run: Run, model: torch.nn.Module, train: Any, fingerprint: str,
                   cfg: Config, device: torch.device, reporter: Reporter) -> dict[str, dict[str, Any]]:
    """Fit what needs fitting, from the run's cache where its key matches; else one ID-train pass.
    Returns each fitted method's cache key (recorded with the thresholds)."""
    keys, todo = {}, []
    for m, d in detectors.items():
        if not d.needs_fit:
            continue
        keys[m] = fit_key(m, d, fingerprint, cfg, len(train))
        if load_fit(run, d, keys[m]) is not None:
            reporter.log(f"{m}: fit on ID train loaded from {run.path / 'fits'}")
        else:
            todo.append(m)
    if not todo:
        return keys
    num_maps = max(detectors[m].num_maps for m in todo)  # a decoder with fw_layers > 1 reads stage maps
    # the maps of the rows the fits read, not of all training images (gigabytes)
    wanted = [detectors[m].map_rows(len(train)) for m in todo if detectors[m].num_maps]
    map_rows = None if not wanted or any(r is None for r in wanted) else torch.cat(wanted)  # type: ignore[arg-type]
    feats = extract_features(model, train.images, device, cfg.evaluate.batch_size, num_maps, train.labels, reporter,
                             "ID train features", map_rows)
    for m in todo:
        detectors[m].fit(feats)
        save_fit(run, detectors[m], keys[m])
    return keys


@holds_locks  # the run it writes is locked until it returns
def evaluate(cfg: Config, run_path: str | None = None, reporter: Reporter | None = None) -> Evaluation:
    reporter = reporter or NullReporter()
    device = resolve_device(cfg.run.device)
    configure_threads(cfg.run.num_threads)
    methods = resolve_methods(cfg.evaluate.methods)
    check_given_files(cfg, reporter)  # a named --classifier is checked before runs or data are looked up
    needed = [cfg.data.id] + ([] if cfg.evaluate.validation else cfg.data.ood)
    if run_path is None:
        preflight(cfg, needed)  # every missing set named at once, before looking for runs
    run, methods = _target_run(run_path, cfg, methods, reporter)  # a named run another command writes: refused here
    if run_path is not None:
        preflight(cfg, needed)
    if cfg.model.classifier is None and run is not None:
        cfg.model.classifier = run.info.get("classifier")
    clf_path = check_classifier(cfg, reporter)
    has_decoder = run is not None and run.file("decoder.pt").is_file()
    # half of the ID test split needs no decoder run; the other sources are what a decoder run held out
    if cfg.evaluate.validation and not has_decoder and cfg.data.val_id_source != "test":
        raise ConfigError("--validation scores a train-decoder run's held-out split; name the run with --run RUN, "
                          "or validate on half of the ID test split with --set data.val_id_source=test")
    created = run is None
    if run is None:
        run = create_run(cfg, "evaluate")
        run.update(classifier=str(Path(clf_path).resolve()))
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    root, size = data_root(cfg), cfg.data.image_size

    splits = load_id_splits(cfg.data.id, root, size, cfg.data.strict)
    classifier = open_classifier(clf_path, cfg, num_classes=len(splits["train"].classes or []))
    model = classifier.model.to(device)
    decoder = None
    options: dict[str, Any] = {"config": cfg}
    meta: dict[str, Any] = {}
    if uses_decoder(methods) or (cfg.evaluate.validation and has_decoder):
        decoder, ckpt = load_decoder(run.file("decoder.pt"), classifier)
        meta = ckpt.get("meta", {})
        options["decoder_rows"] = decoder_train_ids(meta, cfg.data.id, len(splits["train"]))
    plan = _plan(cfg, run, meta, splits, options, root, size, classifier.meta, str(clf_path))
    ctx = DetectorContext(classifier=model, device=device, decoder=decoder, options=options)
    detectors = build_detectors(ctx, methods)
    num_maps = max(d.num_maps for d in detectors.values())
    seconds = dict.fromkeys(methods, 0.0)

    if not plan.validation:
        begin_results(run)  # score and visualize refuse this run until write_results
    fits = _fit_detectors(detectors, run, model, plan.fit, classifier.fingerprint, cfg, device, reporter)
    ctx.memo.clear()  # the fit rows' scores served the combinations' fits; scoring starts afresh
    del splits
    id_test = plan.id
    id_feats = extract_features(model, id_test.images, device, cfg.evaluate.batch_size, num_maps, id_test.labels, reporter, "ID test features")
    acc = float((id_feats.preds == id_test.labels).float().mean()) if id_test.labels is not None else None
    id_scores = {m: _score(ctx, d, id_feats, id_test.images, seconds) for m, d in detectors.items()}
    for m, s in id_scores.items():
        save_scores(run, m, f"{plan.prefix}id", s, plan.id_rows)
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
        for m, d in detectors.items():
            scores = _score(ctx, d, feats, ood.images, seconds)
            save_scores(run, m, f"{plan.prefix}{name}", scores, rows)
            per_method[m][name] = {**ood_metrics(id_scores[m], scores, cfg.evaluate.fpr_convention), "n": len(scores)}
        del ood, feats

    results: dict[str, Any] = {
        "id_dataset": f"{cfg.data.id} (validation split)" if plan.validation else cfg.data.id,
        "classifier": str(clf_path),
        "classifier_arch": classifier.arch,
        "id_test_accuracy": acc,
        "n_id": len(id_test),
        "methods": methods,
        "fpr_convention": cfg.evaluate.fpr_convention,
        "caption": CONVENTION_CAPTION[cfg.evaluate.fpr_convention],
        "results": {
            m: {**per_set, "mean": {**mean_metrics(per_set), "n": sum(int(v["n"]) for v in per_set.values())}}
            for m, per_set in per_method.items() if per_set
        },
        "thresholds": {m: id_threshold(s, THRESHOLD_KEEP) for m, s in id_scores.items()},
        # what each threshold was set under: every fit and scoring parameter, and the fit itself (hood score
        # refuses the threshold under other settings or beside another fit)
        "threshold_params": {m: detectors[m].settings() for m in id_scores},
        "fits": fits,
        "threshold_rule": f"OOD score above which an image is called out; keeps {THRESHOLD_KEEP:.0%} of ID test images",
        "score_seconds": {m: round(s, 3) for m, s in seconds.items()},
        # which images were scored: every method and every decoder seed reads the same rows (scores/*.npz hold them)
        "draw": {"mode": cfg.data.ood_draw, "seed": cfg.data.ood_draw_seed,
                 "id": {"count": len(id_test), "size": plan.id_size, **_id_half(cfg, plan)}, "ood": drawn},
        "notes": notes,
    }
    if plan.validation:
        results["validation"] = plan.validation
        atomic_write_json(run.file("validation.json"), results)
        atomic_write_text(run.file("validation.csv"), results_csv(results))
        if created:  # a fresh run that only validated (the baselines on half of the ID test split) is done
            run.mark_complete()
        return Evaluation(run, results)
    atomic_write_text(run.file("results.csv"), results_csv(results))
    write_results(run, results)
    if run.info.get("command") == "evaluate":
        run.mark_complete()
    else:
        run.update(evaluated=True)
    return Evaluation(run, results)


@dataclass
class Plan:
    """What one evaluate scores, in test or validation mode alike: the rows the detectors fit on, the ID set
    (already drawn), the OOD sets (loaded one at a time), and where the scores go."""

    fit: ImageSet
    id: ImageSet
    ood: list[tuple[str, Callable[[], ImageSet]]]
    ood_count: int | None  # images per OOD set; None = all of each
    prefix: str  # of score files: validation scores never overwrite the test scores
    validation: dict[str, Any] | None = None  # how the validation split was made; None for the test sets
    id_rows: torch.Tensor | None = None  # the ID set's scored rows (of the whole split it comes from)
    id_size: int = 0  # its size before the draw


def _plan(cfg: Config, run: Run, meta: dict[str, Any], splits: dict[str, ImageSet], options: dict[str, Any],
          root: Path, size: int, classifier_meta: dict[str, Any], classifier: str) -> Plan:
    """The test sets, or with ``--validation`` the run's validation split; then the ID draw
    (``data.id_test_count``) and the OOD count, by one rule for both. With ``data.val_id_source: test`` the
    ID test split is cut in two halves, one for each mode, so no image both chooses a setting and is a test figure."""
    halves = id_test_halves(len(splits["test"]), cfg.data.ood_draw_seed) if cfg.data.val_id_source == "test" else None
    if cfg.evaluate.validation:
        plan = _validation_plan(meta, run, cfg, splits, options, root, size, classifier_meta, classifier, halves)
    else:
        test_sets = [(dataset_label(spec), lambda spec=spec: load_image_set(spec, root, size, cfg.data.strict)) for spec in cfg.data.ood]
        test = splits["test"] if halves is None else splits["test"].subset(halves[1])
        plan = Plan(fit=splits["train"], id=test, ood=test_sets, ood_count=None, prefix="",
                    id_rows=None if halves is None else halves[1])
    plan.id_size = len(plan.id)
    plan.id, rows = draw(plan.id, cfg.data.id_test_count, cfg.data.ood_draw, cfg.data.ood_draw_seed)
    plan.id_rows = rows if plan.id_rows is None else plan.id_rows[rows]
    # the protocol: len(ID test)/5 images of each test set; all of each validation set
    plan.ood_count = cfg.data.ood_count or (None if plan.validation else max(1, len(plan.id) // 5))
    return plan


def _validation_plan(meta: dict[str, Any], run: Run, cfg: Config, splits: dict[str, ImageSet], options: dict[str, Any],
                     root: Path, size: int, classifier_meta: dict[str, Any], classifier: str,
                     halves: tuple[torch.Tensor, torch.Tensor] | None) -> Plan:
    """The split the decoder run held out (its config, stored in decoder.pt, names it): its held-out ID rows
    (or, given ``halves``, the validation half of the ID test split) against its held-out auxiliary classes,
    fresh draws of the built-in synthetic sets among ``data.ood`` and ``data.val_ood``, and the other
    ``data.val_ood`` sets; detectors fit on the training rows that are not validation images."""
    data = (meta.get("config") or {}).get("data", {})
    per_class, aux_classes, aux = int(data.get("val_id_per_class", 0)), int(data.get("val_aux_classes", 0)), data.get("aux")
    source = str(data.get("val_id_source", "last"))  # decoders from before the key held out the last rows
    train = splits["train"]
    if halves is not None:
        source, fit, id_rows = "test", train, halves[0]
        val_id = splits["test"].subset(halves[0], name=f"{splits['test'].name}-val")
    elif source == "test":
        raise ConfigError(
            f"{run.path} was trained to validate on half of the ID test split; evaluate it with its config or "
            f"--set data.val_id_source=test, so that the test table leaves that half out"
        )
    else:
        if per_class <= 0 and source != "classifier":
            raise ConfigError(
                f"{run.path} holds no validation split; train the decoder with --set data.val_id_per_class=100 or, for a "
                f"classifier from hood pretrain, --set data.val_id_source=classifier (and --set data.val_aux_classes=16 "
                f"for held-out outlier classes), or evaluate with --set data.val_id_source=test (half of the ID test split)"
            )
        kept, held = validation_rows(train, source, per_class, classifier_meta, classifier)
        rows = options.get("decoder_rows")
        if rows is not None:  # the combinations' held-out statistics index the fit set, not the whole split
            pos = torch.full((len(train),), -1, dtype=torch.long)
            pos[kept] = torch.arange(len(kept))
            rows = pos[rows[rows < len(train)]]
            options["decoder_rows"] = rows[rows >= 0]
        fit, val_id, id_rows = train.subset(kept), train.subset(held, name=f"{train.name}-val"), None
    ood: list[tuple[str, Callable[[], ImageSet]]] = []
    if aux_classes > 0 and aux:
        ood.append((f"{dataset_label(aux)}-val", lambda: load_held_out_classes(aux, root, size, aux_classes, cfg.data.strict)))
    # a built-in synthetic set is validated on another seeded draw, so no test image is ever used to choose
    specs = dict.fromkeys([s for s in cfg.data.ood if s in SYNTHETIC_NAMES] + list(cfg.data.val_ood))
    for spec in specs:
        if spec in SYNTHETIC_NAMES:
            ood.append((f"{spec}-val", lambda k=spec: synthetic_set(k, size=size, seed=VAL_NOISE_SEED, suffix="-val")))
        else:
            label = dataset_label(spec)
            ood.append((label if label.endswith("-val") else f"{label}-val",
                        lambda spec=spec: load_image_set(spec, root, size, cfg.data.strict)))
    if not ood:
        raise ConfigError(
            f"{run.path} held out no auxiliary classes, and neither --ood nor data.val_ood names a validation set "
            f"(a synthetic set: {', '.join(SYNTHETIC_NAMES)}; or --set data.val_ood=[FOLDER]); nothing to validate against"
        )
    describe = {"val_id_source": source, "val_id_per_class": 0 if halves is not None else per_class,
                "val_aux_classes": aux_classes, "aux": aux, "val_ood": list(cfg.data.val_ood), "n_fit": len(fit)}
    if halves is not None:  # the size of the half left for the test table (draw.id records the seed)
        describe["n_test_half"] = len(halves[1])
    return Plan(fit=fit, id=val_id, ood=ood, ood_count=None, prefix="val-", validation=describe, id_rows=id_rows)


def _id_half(cfg: Config, plan: Plan) -> dict[str, Any]:
    """How the ID test split was halved (``data.val_id_source: test``), for the draw record; else nothing."""
    if cfg.data.val_id_source != "test":
        return {}
    return {"half": "validation" if plan.validation else "test", "half_seed": cfg.data.ood_draw_seed}


def _score(ctx: DetectorContext, d: Detector, feats: FeatureSet, images: torch.Tensor, seconds: dict[str, float]) -> np.ndarray:
    """A method's scores and its time; a combination's time is what it adds to the parts scored before it."""
    start = time.perf_counter()
    scores = d.score_images(images) if d.needs_images else ctx.score(d, feats)
    seconds[d.name] += time.perf_counter() - start
    return np.asarray(scores, dtype=np.float64)

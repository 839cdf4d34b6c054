"""A decoder run keeps the features of the ID training rows it trained on (``id_features.pt``), and ``evaluate``
fits on them instead of running the classifier on those rows again: the same fits and scores, fewer rows through
the classifier, and a file that does not match left unused with one log line."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import tiny_config, tiny_decoder_run

from hood.fingerprint import fingerprint
from hood.jobs.id_features import FILE
from hood.progress import NullReporter

METHODS = ["knn", "vim", "mahalanobis", "heatmap+vim"]


class Lines(NullReporter):
    """A reporter that keeps its log lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


def _decoder_run(root: Path, **extra: Any) -> dict[str, Any]:
    """A tiny decoder run under ``root`` with its own cache and data root."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOOD_CACHE", str(root / "_cache"))
        mp.setenv("HOOD_DATA", str(root / "_data"))
        run = tiny_decoder_run(root, **extra)
    torch.set_num_threads(threads)
    return {"root": root, "run": run}


@pytest.fixture(scope="module")
def decoder_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Trained on 20 of the 36 ID training images: evaluate reads 20 rows and runs the classifier on 16."""
    return _decoder_run(tmp_path_factory.mktemp("reuse"), **{"decoder.num_id": 20})


def _evaluate(made: dict[str, Any], to: Path, monkeypatch: pytest.MonkeyPatch, keep: bool = True,
              **extra: Any) -> dict[str, Any]:
    """Evaluate a copy of ``made``'s run at ``to`` (without its features file unless ``keep``): the results, the
    log lines and the rows of each ID-train feature pass."""
    import hood.jobs.evaluate as ev
    from hood.engine.features import extract_features as real

    run = Path(shutil.copytree(made["run"], to))
    if not keep:
        (run / FILE).unlink()
    passes: list[int] = []

    def counted(model: Any, images: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if "ID train features" in args:
            rows = kwargs.get("rows")
            passes.append(len(images) if rows is None else len(rows))
        return real(model, images, *args, **kwargs)

    monkeypatch.setattr(ev, "extract_features", counted)
    monkeypatch.setenv("HOOD_CACHE", str(made["root"] / "_cache"))
    lines = Lines()
    cfg = tiny_config(made["root"], **{"evaluate.methods": METHODS, **extra})
    results = ev.evaluate(cfg, str(run), lines).results
    return {"run": run, "results": results, "lines": lines.lines, "passes": passes}


def _scores(run: Path) -> dict[str, np.ndarray]:
    return {f"{p.parent.name}/{p.stem}": np.load(p)["scores"] for p in sorted((run / "scores").glob("*/*.npz"))}


def _same_scores(a: Path, b: Path) -> bool:
    """Whether the two runs' score files agree to a tight tolerance (asserted); True where every bit agrees."""
    sa, sb = _scores(a), _scores(b)
    assert sa.keys() == sb.keys() and sa
    for name in sa:
        np.testing.assert_allclose(sa[name], sb[name], rtol=1e-5, atol=1e-6, err_msg=name)
    return all(np.array_equal(sa[n], sb[n]) for n in sa)


def test_train_decoder_keeps_the_features_of_the_rows_it_trained_on(decoder_run: dict[str, Any]) -> None:
    _assert_keeps_its_id_rows(decoder_run)


def test_composites_and_prototype_means_are_not_kept(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The feature pass of a decoder trained on composites (and on the mean images of prototype_k > 1) holds more
    rows than its ID images: the file holds the ID rows alone, at their rows of the training split."""
    made = _decoder_run(tmp_path_factory.mktemp("composites"),
                        **{"decoder.num_id": 20, "decoder.composites": 8, "decoder.prototype_k": 2})
    _assert_keeps_its_id_rows(made)


def _assert_keeps_its_id_rows(decoder_run: dict[str, Any]) -> None:
    from hood.data.sources import load_id_splits
    from hood.engine.features import extract_features
    from hood.models.checkpoint import load_classifier, safe_load

    saved = safe_load(decoder_run["run"] / FILE)
    meta = safe_load(decoder_run["run"] / "decoder.pt")["meta"]
    assert torch.equal(saved["rows"], meta["id_rows"]) and len(saved["rows"]) == 20
    assert saved["key"]["precision"] == "float32" and saved["key"]["image_size"] == 32
    assert "maps" not in saved and saved["features"].shape == (20, 128) and saved["logits"].shape == (20, 3)
    train = load_id_splits(str(decoder_run["root"] / "id"), decoder_run["root"] / "_data", 32)["train"]
    model = load_classifier(decoder_run["root"] / "classifier.pt").model
    again = extract_features(model, train.images[saved["rows"]], torch.device("cpu"))
    torch.testing.assert_close(saved["features"], again.features, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(saved["logits"], again.logits, rtol=1e-5, atol=1e-6)


def test_evaluate_reads_the_saved_rows_and_fits_and_scores_as_without_them(
        decoder_run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reused = _evaluate(decoder_run, tmp_path / "reused", monkeypatch)
    fresh = _evaluate(decoder_run, tmp_path / "fresh", monkeypatch, keep=False)
    assert reused["passes"] == [16] and fresh["passes"] == [36]  # 20 of the 36 rows read, not extracted
    said = [ln for ln in reused["lines"] if "read from the decoder run" in ln]
    assert said == [f"features of 20 of the 36 ID training rows read from the decoder run ({FILE}, computed by train-decoder)"]
    assert not any(FILE in ln for ln in fresh["lines"])  # a run without the file: as before, nothing said
    _same_scores(reused["run"], fresh["run"])  # to the bit on a 2-core AVX-512 CPU; other batches may move the last bits
    for m in ("knn", "vim", "mahalanobis", "heatmap+vim"):
        a = torch.load(reused["run"] / "fits" / f"{m}.pt", weights_only=True)
        b = torch.load(fresh["run"] / "fits" / f"{m}.pt", weights_only=True)
        assert a["key"] == b["key"] and a["state"].keys() == b["state"].keys()
        for k, v in a["state"].items():
            if isinstance(v, torch.Tensor):
                torch.testing.assert_close(v, b["state"][k], rtol=1e-5, atol=1e-6, msg=f"{m} {k}")
    for m, sets in fresh["results"]["results"].items():
        for name, figures in sets.items():
            assert reused["results"]["results"][m][name] == pytest.approx(figures, abs=1e-9), (m, name)


def test_a_drawn_fit_set_reads_the_saved_rows_it_holds(
        decoder_run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """evaluate.fit_count draws 24 of the 36 rows: the saved rows among them are read at their places in the draw, and
    the fits are those of an evaluate that extracts all 24."""
    from hood.data.draw import draw_rows

    reused = _evaluate(decoder_run, tmp_path / "reused", monkeypatch, **{"evaluate.fit_count": 24})
    fresh = _evaluate(decoder_run, tmp_path / "fresh", monkeypatch, keep=False, **{"evaluate.fit_count": 24})
    id_rows = torch.load(decoder_run["run"] / FILE, weights_only=True)["rows"]
    held = int(torch.isin(draw_rows(36, 24, "random", 0), id_rows).sum())
    assert 0 < held < 20 and reused["passes"] == [24 - held] and fresh["passes"] == [24]
    _same_scores(reused["run"], fresh["run"])
    for m in ("knn", "vim", "mahalanobis", "heatmap+vim"):
        a = torch.load(reused["run"] / "fits" / f"{m}.pt", weights_only=True)
        b = torch.load(fresh["run"] / "fits" / f"{m}.pt", weights_only=True)
        assert a["key"] == b["key"]
        for k, v in a["state"].items():
            if isinstance(v, torch.Tensor):
                torch.testing.assert_close(v, b["state"][k], rtol=1e-5, atol=1e-6, msg=f"{m} {k}")


@pytest.mark.parametrize("min_unseen", [1, 1000])
def test_the_combinations_stage_maps_are_extracted_for_their_rows_alone(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, min_unseen: int) -> None:
    """A skip-input decoder: the combination's rows need stage maps, which the file does not hold. They are rows the
    decoder never saw (min_unseen 1), extracted in any case, so all 20 saved rows are read; with too few unseen rows
    (min_unseen 1000) the combination reads the decoder's rows too, and those run through the classifier again."""
    import hood.detectors.combined as combined

    made = _decoder_run(tmp_path_factory.mktemp("maps"), per_class=40, **{"decoder.num_id": 20, "decoder.fw_layers": 2})
    monkeypatch.setattr(combined, "FIT_ROWS", 50)  # 50 of the 120 rows: the maps of some, the features of all
    monkeypatch.setattr(combined, "MIN_UNSEEN", min_unseen)
    reused = _evaluate(made, tmp_path / "reused", monkeypatch, **{"evaluate.methods": ["knn", "heatmap+vim"]})
    fresh = _evaluate(made, tmp_path / "fresh", monkeypatch, keep=False, **{"evaluate.methods": ["knn", "heatmap+vim"]})
    id_rows = torch.load(made["run"] / FILE, weights_only=True)["rows"]
    rows = combined.fit_rows(120, id_rows, 0)
    overlap = int(torch.isin(id_rows, rows).sum())
    # one seed draws both, so the decoder's 20 rows are among the combination's 50 when it reads every row
    assert overlap == (0 if min_unseen == 1 else 20) and len(rows) == 50
    assert reused["passes"] == [120 - 20 + overlap] and fresh["passes"] == [120]
    said = [ln for ln in reused["lines"] if FILE in ln]
    assert said == ([f"features of 20 of the 120 ID training rows read from the decoder run ({FILE}, computed by "
                     f"train-decoder)"] if overlap == 0 else [])
    _same_scores(reused["run"], fresh["run"])
    a = torch.load(reused["run"] / "fits" / "heatmap+vim.pt", weights_only=True)["state"]
    b = torch.load(fresh["run"] / "fits" / "heatmap+vim.pt", weights_only=True)["state"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)


def _rewrite(run: Path, change: Any, checksum: bool) -> None:
    saved = torch.load(run / FILE, weights_only=True)
    change(saved)
    if checksum:
        saved["checksum"] = fingerprint((k, saved[k]) for k in ("rows", "images", "features", "logits"))
    torch.save(saved, run / FILE)


@pytest.mark.parametrize(("change", "checksum", "said"), [
    (lambda s: s["features"].add_(1.0), False, f"{FILE} is damaged (its checksum does not match"),
    (lambda s: s["key"].update(classifier="0123456789abcdef"), False, "was computed with classifier 0123456789abcdef, "
                                                                       "this evaluate uses classifier "),
    (lambda s: s["key"].update(precision="bfloat16"), False, "was computed with precision bfloat16, this evaluate uses "
                                                             "precision float32"),
    (lambda s: s.update(rows=(s["rows"] + 1) % 36), True, "holds the features of other images than these rows"),
    (lambda s: s.update(features="x"), False, "is damaged (an array is missing)"),
    (lambda s: s.update(rows=s["rows"][0]), False, "is damaged (its rows are not what hood writes"),  # a 0-d tensor
    (lambda s: s.update(features=s["features"].to_sparse()), False, "is damaged (an array is not a dense tensor)"),
])
def test_a_file_that_does_not_match_is_left_unused_with_one_line(
        decoder_run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: Any, checksum: bool,
        said: str) -> None:
    fresh = _evaluate(decoder_run, tmp_path / "fresh", monkeypatch, keep=False)
    copy = Path(shutil.copytree(decoder_run["run"], tmp_path / "source"))
    _rewrite(copy, change, checksum)
    changed = _evaluate({**decoder_run, "run": copy}, tmp_path / "changed", monkeypatch)
    lines = [ln for ln in changed["lines"] if FILE in ln]
    assert len(lines) == 1 and said in lines[0] and "run through the classifier again" in lines[0], lines
    assert changed["passes"] == [36]
    assert _same_scores(changed["run"], fresh["run"])  # both extracted every row, in the same batches


def test_a_file_that_cannot_be_read_is_left_unused_with_one_line(
        decoder_run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = Path(shutil.copytree(decoder_run["run"], tmp_path / "source"))
    (copy / FILE).write_bytes(b"not a checkpoint")
    changed = _evaluate({**decoder_run, "run": copy}, tmp_path / "changed", monkeypatch)
    lines = [ln for ln in changed["lines"] if FILE in ln]
    assert len(lines) == 1 and "run through the classifier again" in lines[0] and changed["passes"] == [36]


def test_the_saved_rows_are_found_in_a_fit_set_drawn_from_the_split(tmp_path: Path) -> None:
    """A fit set that is a draw of the training split (``evaluate.fit_count``, the classifier's held-out rows left
    out): each saved row is read at its position in the draw, and the joined set is the draw's, row for row."""
    from types import SimpleNamespace

    from hood.data.images import ImageSet
    from hood.engine.features import FeatureSet
    from hood.jobs.id_features import read_id_features, save_id_features
    from hood.jobs.plan import Plan, cap_fit

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (30, 3, 4, 4), dtype=torch.uint8, generator=g)
    feats = torch.arange(30, dtype=torch.float32)[:, None].repeat(1, 5)  # row i's features are i
    logits = -feats[:, :3]
    run, key = SimpleNamespace(path=tmp_path), {"classifier": "f", "precision": "float32"}
    kept = torch.tensor([3, 7, 11, 20, 25])
    save_id_features(run, FeatureSet(feats[kept], logits[kept]), kept, images[kept], key)  # type: ignore[arg-type]
    plan = Plan(fit=ImageSet("train", images[1:]), decoder_rows=None, id=ImageSet("id", images), ood=[], fit_rows=torch.arange(1, 30))
    cap_fit(plan, 12, 0)
    assert plan.fit_rows is not None and torch.equal(plan.fit.images, images[plan.fit_rows])
    saved = read_id_features(run, key, plan.fit.images, plan.fit_rows, Lines())  # type: ignore[arg-type]
    assert saved is not None and len(saved) == 3  # rows 3, 7 and 11 are in the draw, 20 and 25 are not
    assert sorted(plan.fit_rows[saved.at].tolist()) == sorted(set(kept.tolist()) & set(plan.fit_rows.tolist()))
    others = saved.others(len(plan.fit))
    joined = saved.join(FeatureSet(feats[plan.fit_rows[others]], logits[plan.fit_rows[others]]), others, None)
    assert torch.equal(joined.features, feats[plan.fit_rows]) and torch.equal(joined.logits, logits[plan.fit_rows])


def test_row_hashes_of_given_rows_are_those_of_the_rows_copied_out() -> None:
    """The saved rows' images are hashed where they lie (``rows=``), not copied out of the fit set first."""
    from hood.fingerprint import row_fingerprints

    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    rows = torch.tensor([7, 2, 9, 0])
    assert torch.equal(row_fingerprints(images, rows), row_fingerprints(images[rows]))
    assert len(set(row_fingerprints(images).tolist())) == 10 and len(row_fingerprints(images, rows[:0])) == 0


def test_a_disk_that_cannot_take_the_file_leaves_the_decoder_run_complete(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file only spares evaluate a pass: a failed write of it is one line, and the decoder trained is the run's,
    complete, as without the file (not a failed command after the training it followed)."""
    import errno
    import json

    from conftest import save_random_classifier, write_flat_folder, write_image_folder

    import hood.jobs.id_features as id_features
    from hood.jobs.train_decoder import train_decoder
    from hood.runs import create_run

    def full(path: Any, writer: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(id_features, "atomic_save_with", full)
    monkeypatch.setenv("HOOD_CACHE", str(tmp_path / "_cache"))
    monkeypatch.setenv("HOOD_DATA", str(tmp_path / "_data"))
    write_image_folder(tmp_path / "id" / "train", per_class=4)
    write_image_folder(tmp_path / "id" / "test", per_class=2, offset=100)
    write_flat_folder(tmp_path / "ood", count=6)
    save_random_classifier(tmp_path / "classifier.pt")
    cfg = tiny_config(tmp_path, **{"run.out": str(tmp_path / "runs" / "decoder"), "decoder.num_ood": 6})
    threads, lines = torch.get_num_threads(), Lines()
    try:
        run = train_decoder(cfg, lines, create_run(cfg, "train-decoder")).path
    finally:
        torch.set_num_threads(threads)
    assert json.loads((run / "run.json").read_text())["status"] == "complete" and (run / "decoder.pt").is_file()
    assert not (run / FILE).exists()
    said = [ln for ln in lines.lines if FILE in ln]
    assert len(said) == 1 and "No space left on device" in said[0] and "evaluate runs the classifier" in said[0], said


def test_the_validation_fits_read_the_saved_rows_among_those_the_classifier_trained_on(
        tmp_path: Path, id_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """data.val_id_source=classifier: the validation fits read the 27 rows the classifier trained on (the training
    split less its 9 held-out rows); the decoder's 15 of them are read from the file at their places among the 27."""
    from conftest import write_image_folder

    import hood.jobs.evaluate as ev
    from hood.config import resolve
    from hood.jobs.pretrain import pretrain
    from hood.jobs.train_decoder import train_decoder
    from hood.runs import create_run

    monkeypatch.setenv("HOOD_CACHE", str(tmp_path / "_cache"))
    monkeypatch.setenv("HOOD_DATA", str(tmp_path / "_data"))
    threads = torch.get_num_threads()
    base = {"data.id": str(id_folder), "model.arch": "wrn10_2", "run.device": "cpu", "run.num_threads": 1}
    try:
        pcfg = resolve(None, {**base, "pretrain.epochs": 1, "pretrain.batch_size": 12, "pretrain.val_fraction": 0.25,
                              "run.out": str(tmp_path / "clf")}, None)
        clf = pretrain(pcfg, None, create_run(pcfg, "pretrain")).file("classifier.pt")
        aux = write_image_folder(tmp_path / "pool", classes=4, per_class=5, offset=500)
        named = {**base, "data.aux": str(aux), "data.ood": ["uniform-noise"], "model.classifier": str(clf),
                 "decoder.epochs": 1, "decoder.batch_size": 8, "decoder.num_ood": 15, "decoder.num_id": 15,
                 "data.val_id_source": "classifier", "data.val_aux_classes": 1, "run.out": str(tmp_path / "dec"),
                 "evaluate.methods": ["knn", "vim"], "evaluate.params.knn.k": 5, "evaluate.validation": True}
        cfg = resolve(None, named, None)
        made = train_decoder(cfg, None, create_run(cfg, "train-decoder")).path
        results = {}
        for name, keep in (("reused", True), ("fresh", False)):
            run = Path(shutil.copytree(made, tmp_path / name))
            if not keep:
                (run / FILE).unlink()
            passes: list[int] = []
            real = ev.extract_features

            def counted(model: Any, images: torch.Tensor, *args: Any, real: Any = real, passes: list[int] = passes,
                        **kwargs: Any) -> Any:
                if "ID train features" in args:
                    passes.append(len(images) if kwargs.get("rows") is None else len(kwargs["rows"]))
                return real(model, images, *args, **kwargs)

            monkeypatch.setattr(ev, "extract_features", counted)
            lines = Lines()
            ev.evaluate(cfg, str(run), lines)
            monkeypatch.setattr(ev, "extract_features", real)
            results[name] = {"run": run, "passes": passes, "lines": lines.lines}
    finally:
        torch.set_num_threads(threads)
    assert results["reused"]["passes"] == [12] and results["fresh"]["passes"] == [27]
    assert any("features of 15 of the 27 ID training rows" in ln for ln in results["reused"]["lines"])
    for m in ("knn", "vim"):
        a = torch.load(results["reused"]["run"] / "fits" / f"{m}.pt", weights_only=True)["state"]
        b = torch.load(results["fresh"]["run"] / "fits" / f"{m}.pt", weights_only=True)["state"]
        for k, v in a.items():
            if isinstance(v, torch.Tensor):
                torch.testing.assert_close(v, b[k], rtol=1e-5, atol=1e-6, msg=f"{m} {k}")

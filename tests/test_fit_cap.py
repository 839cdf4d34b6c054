"""Work the user did not ask for: the fits read a seeded draw of a large ID training split
(``evaluate.fit_count``), and ``hood visualize`` runs the classifier and decoder on the images it draws, not on
the sets it draws them from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_config

from hood.data.images import ImageSet


def _counting(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[tuple[int, str | None]]:
    """Every feature pass ``module`` makes: its rows and its description."""
    seen: list[tuple[int, str | None]] = []
    real = module.extract_features

    def counted(model: Any, images: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen.append((len(images), kwargs.get("description", args[5] if len(args) > 5 else None)))
        return real(model, images, *args, **kwargs)

    monkeypatch.setattr(module, "extract_features", counted)
    return seen


def test_the_fits_read_a_seeded_draw_of_fit_count_rows(pipeline: dict[str, Any], run_copy: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import hood.jobs.evaluate as ev

    seen = _counting(monkeypatch, ev)
    (run_copy / "id_features.pt").unlink()  # every drawn row through the classifier, none read from the decoder run
    cfg = tiny_config(pipeline["root"], **{"evaluate.methods": ["knn", "heatmap+vim"], "evaluate.fit_count": 20})
    res = ev.evaluate(cfg, str(run_copy)).results
    assert (20, "ID train features") in seen and not any(n == 36 for n, _ in seen)  # 36 training images, 20 read
    assert res["draw"]["fit"] == {"fit_count": 20, "fit_seed": 0, "fit_of": 36}
    key = torch.load(run_copy / "fits" / "knn.pt", weights_only=False)["key"]
    assert key["n_train"] == 20 and key["fit_count"] == 20
    seen.clear()
    ev.evaluate(cfg, str(run_copy))
    assert not any(d == "ID train features" for _, d in seen)  # the same draw again: the fits load from the run
    ev.evaluate(tiny_config(pipeline["root"], **{"evaluate.methods": ["knn"], "evaluate.fit_count": 20,
                                                 "data.ood_draw_seed": 1}), str(run_copy))
    assert torch.load(run_copy / "fits" / "knn.pt", weights_only=False)["key"]["fit_seed"] == 1  # another draw: refitted


def test_a_fit_count_above_the_split_fits_on_all_of_it_as_before(pipeline: dict[str, Any]) -> None:
    res = json.loads((pipeline["run"] / "results.json").read_text())
    assert "fit" not in res["draw"] and res["fits"]["knn"]["n_train"] == 36 and "fit_count" not in res["fits"]["knn"]


def test_cap_fit_maps_the_decoders_rows_into_the_draw() -> None:
    from hood.jobs.plan import Plan, cap_fit

    fit = ImageSet("x", torch.arange(20, dtype=torch.uint8).reshape(20, 1, 1, 1).expand(20, 3, 1, 1).contiguous())
    plan = Plan(fit=fit, decoder_rows=torch.arange(10), id=fit, ood=[])
    cap_fit(plan, 8, 0)
    kept = plan.fit.images[:, 0, 0, 0].long()  # each image's value is its row in the split
    assert len(kept) == 8 and plan.decoder_rows is not None
    assert kept[plan.decoder_rows].tolist() == [r for r in kept.tolist() if r < 10]  # the same images, new positions


def test_a_fit_count_below_one_is_refused_with_its_key() -> None:
    from hood.config import resolve
    from hood.errors import ConfigError

    with pytest.raises(ConfigError, match="evaluate.fit_count"):
        resolve(None, {"evaluate.fit_count": 0})


def test_visualize_runs_the_decoder_on_the_images_it_draws(pipeline: dict[str, Any], run_copy: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import hood.jobs.visualize as vis

    seen = _counting(monkeypatch, vis)
    figs = vis.visualize(tiny_config(pipeline["root"]), str(run_copy), n=2, how="top", out_dir=str(tmp_path / "figs"))
    assert [n for n, _ in seen] == [2, 2, 2] and figs.notes == []  # evaluated: picked from its saved scores
    (run_copy / "results.json").unlink()  # never evaluated: each set's draw is scored to pick from, then the picks drawn
    seen.clear()
    vis.visualize(tiny_config(pipeline["root"]), str(run_copy), n=2, how="top", out_dir=str(tmp_path / "figs2"))
    assert [n for n, _ in seen] == [12, 2, 12, 2, 12, 2]


def test_localization_fits_on_evaluates_draw_and_loads_its_fits(pipeline: dict[str, Any], run_copy: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``--localization`` draws its fit rows as evaluate does (evaluate.fit_count), so it loads evaluate's fits instead
    of refitting over them on every row (after which ``hood score`` would refuse the thresholds beside them)."""
    import hood.jobs.evaluate as ev
    from hood.jobs.localization import localize

    cfg = tiny_config(pipeline["root"], **{"evaluate.methods": ["knn"], "evaluate.fit_count": 20, "data.ood": ["uniform-noise"]})
    res = ev.evaluate(cfg, str(run_copy)).results
    seen = _counting(monkeypatch, ev)
    localize(cfg, str(run_copy))
    assert not any(d == "ID train features" for _, d in seen)
    assert torch.load(run_copy / "fits" / "knn.pt", weights_only=False)["key"] == res["fits"]["knn"]

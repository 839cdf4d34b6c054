"""The detectors a command runs, built from the resolved config: each method's ``evaluate.params`` are its
constructor's keywords, checked against the constructor before any work starts.

The detectors speak of their own parameters (``k must be a positive integer``); here, where the values come
from the config, an error also names the key the user set (``evaluate.params.knn.k: ...``).
"""

from __future__ import annotations

import difflib
from typing import Any

import torch

from hood.config import Config
from hood.detectors import COMBINATIONS, DETECTORS, Combination, Detector, all_methods, parts_of
from hood.errors import ConfigError, DetectorParameterError
from hood.models.decoder import HeatmapDecoder


def _close(word: str, options: list[str]) -> str:
    found = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean '{found[0]}'?)" if found else ""


def resolve_methods(methods: list[str]) -> list[str]:
    """``all`` to every method; unknown names are one error naming the known ones."""
    if "all" in methods:
        return all_methods()
    unknown = [m for m in methods if m not in all_methods()]
    if unknown:
        raise ConfigError(f"unknown method '{unknown[0]}'{_close(unknown[0], all_methods())}; available: {', '.join(all_methods())}, or all")
    return list(dict.fromkeys(methods))


def parameters() -> dict[str, dict[str, Any]]:
    """Every method's parameters with their defaults, as its constructor names them."""
    return {m: (COMBINATIONS[m] if m in COMBINATIONS else DETECTORS[m]).keywords() for m in all_methods()}


def check_params(params: dict[str, dict[str, Any]]) -> None:
    """``evaluate.params`` names methods and their parameters: anything else is one line listing what exists."""
    known = parameters()
    for method, kwargs in params.items():
        if method not in known:
            with_params = [m for m, k in known.items() if k]
            raise ConfigError(f"evaluate.params: unknown method '{method}'{_close(method, list(known))}; "
                              f"methods with parameters: {', '.join(with_params)}")
        for name in kwargs:
            if name not in known[method]:
                takes = ", ".join(f"{k} (default {v})" for k, v in known[method].items()) or "no parameters"
                raise ConfigError(f"evaluate.params.{method}: unknown parameter '{name}'{_close(name, list(known[method]))}; "
                                  f"{method} takes {takes}")


def _keyed(method: str, build: Any) -> Any:
    try:
        return build()
    except DetectorParameterError as err:
        raise ConfigError(f"evaluate.params.{method}.{err.param}: {err}") from None


def build_detectors(methods: list[str], model: torch.nn.Module, cfg: Config, device: torch.device,
                    decoder: HeatmapDecoder | None = None) -> tuple[dict[str, Detector], dict[str, Combination]]:
    """The detectors ``methods`` read (a combination's parts included, each built once) and the combinations
    among them. ``model`` is the loaded classifier; ``decoder`` the trained heatmap decoder, where one is read."""
    params = cfg.evaluate.params
    check_params(params)
    detectors: dict[str, Detector] = {}
    for part in dict.fromkeys(p for m in methods for p in parts_of(m)):
        cls = DETECTORS[part]
        if cls.needs_decoder:
            if decoder is None:
                raise ConfigError(f"{part} needs a trained decoder: a train-decoder run")
            detectors[part] = cls(model, decoder, device=device, batch_size=cfg.evaluate.batch_size)
        else:
            detectors[part] = _keyed(part, lambda c=cls, p=part: c(model, **params.get(p, {}), device=device,
                                                                 batch_size=cfg.evaluate.batch_size))
    combos = {m: _keyed(m, lambda m=m: COMBINATIONS[m](**params.get(m, {}))) for m in methods if m in COMBINATIONS}
    return detectors, combos


def check_fit_rows(detectors: dict[str, Detector], n: int) -> None:
    """Every fitted detector's parameters against the ``n`` ID training rows it will fit on, before any pass."""
    for m, d in detectors.items():
        if d.needs_fit:
            _keyed(m, lambda d=d: d.check_fit_rows(n))


def method_settings(method: str, detectors: dict[str, Detector], combos: dict[str, Combination]) -> dict[str, Any]:
    """Every parameter ``method``'s scores depend on: a detector's own, or a combination's weights and its parts'."""
    if method in combos:
        return {**combos[method].settings(), "parts": {p: detectors[p].settings() for p in combos[method].parts}}
    return detectors[method].settings()

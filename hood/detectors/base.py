"""One interface for every detector, so ``evaluate`` loops over them without knowing any.

A detector scores a :class:`FeatureSet` (features, logits, optional stage maps of a data set, computed
once per run); larger scores mean more out-of-distribution. Detectors that learn from ID data
(``needs_fit``) get the ID training FeatureSet once through :meth:`fit`, and hand what they learned to
:meth:`state` so a run can cache it (``evaluate`` then skips the ID-train pass). The few that need
images and gradients (ODIN) set ``needs_images`` and implement :meth:`score_images` instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from hood.config import EvaluateConfig
from hood.detectors.memo import ScoreMemo
from hood.engine.features import FeatureSet
from hood.errors import DetectorParameterError


@dataclass
class DetectorContext:
    """What a detector may need to be built: the classifier, the trained decoder, the device, options.

    ``options`` may hold ``config`` (a resolved Config, whose ``evaluate`` section carries the baselines'
    parameters) and/or the parameters themselves by name (``{"knn_k": 5}``), which win.
    """

    classifier: torch.nn.Module
    device: torch.device
    decoder: torch.nn.Module | None = None
    options: dict[str, Any] = field(default_factory=dict)
    memo: ScoreMemo = field(default_factory=ScoreMemo)  # the shared detectors' scores, see :meth:`detector`
    _built: dict[str, Detector] = field(default_factory=dict, repr=False)

    def detector(self, name: str) -> Detector:
        """The one detector called ``name`` in this context, built on first use.

        Why one: a combination (``heatmap+vim``) is built from the heatmap and ViM detectors, and an
        evaluation of ``heatmap``, ``vim`` and ``heatmap+vim`` should, through :attr:`memo`, run the
        decoder and ViM once per image rather than once per method that reads them.
        """
        if name not in self._built:
            self._built[name] = DETECTORS[name](self)
        return self._built[name]

    def score(self, detector: Detector, feats: FeatureSet) -> np.ndarray:
        """``detector.score(feats)`` through :attr:`memo`: what another method already computed is reused."""
        return self.memo.score(detector, feats, detector.score)

    def param(self, name: str) -> Any:
        """The option ``name``: given by name in :attr:`options`, else the config's ``evaluate`` value, else
        that key's default. One source of defaults: :class:`EvaluateConfig` (a detector built without a
        config, from the Python API, gets what ``hood evaluate`` would use)."""
        if name in self.options:
            return self.options[name]
        section = getattr(self.options.get("config"), "evaluate", None)
        return getattr(section if section is not None else _EVALUATE_DEFAULTS, name)


_EVALUATE_DEFAULTS = EvaluateConfig()


class Detector(ABC):
    name: ClassVar[str]
    needs_fit: ClassVar[bool] = False
    needs_images: ClassVar[bool] = False
    num_maps: int = 0  # classifier stage maps the detector reads (heatmap decoder skips)

    def fit(self, id_train: FeatureSet) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Learn from the ID training set; a no-op for post-hoc detectors that need nothing."""

    @abstractmethod
    def score(self, feats: FeatureSet) -> np.ndarray:
        """OOD score per sample, larger = more OOD."""

    def score_images(self, images: torch.Tensor) -> np.ndarray:
        """OOD score per uint8 image, for detectors that must run the classifier themselves."""
        raise NotImplementedError(f"{self.name} scores features, not images")

    def map_rows(self, n_train: int) -> torch.Tensor | None:
        """The rows of an ``n_train``-row ID training set whose stage maps :meth:`fit` reads; None = all.
        Only detectors with ``num_maps`` need them, and saying which lets ``evaluate`` keep the maps of
        those rows alone (the maps of all 50,000 CIFAR training images take 6-11 GB)."""
        return None

    def params(self) -> dict[str, Any]:
        """The parameters :meth:`fit` depends on; a cached fit with other parameters is refitted."""
        return {}

    def score_params(self) -> dict[str, Any]:
        """The parameters that change the scores but not the fit. With :meth:`params` they are what a
        stored threshold was set under: ``hood score`` refuses a threshold set under others."""
        return {}

    def settings(self) -> dict[str, Any]:
        """Every parameter the scores depend on, fit and scoring: what a stored threshold was set under."""
        return {**self.params(), **self.score_params()}

    def state(self) -> dict[str, Any]:
        """What :meth:`fit` learned, as tensors and numbers, so a run can cache it."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what :meth:`state` returned."""


DETECTORS: dict[str, Callable[[DetectorContext], Detector]] = {}
NEEDS_DECODER: set[str] = set()  # methods that read a trained decoder: they need a train-decoder run
# per detector, its parameters by the option (``DetectorContext.param``) its factory reads each from
OPTIONS: dict[str, dict[str, str]] = {}


def register(
    name: str, *, needs_decoder: bool = False, options: dict[str, str] | None = None,
) -> Callable[[Callable[[DetectorContext], Detector]], Callable[[DetectorContext], Detector]]:
    """Register a factory; ``options`` maps each constructor parameter it sets to the option it reads it
    from (``{"k": "knn_k"}``), so an error about the parameter can name the setting the user gave."""
    def deco(factory: Callable[[DetectorContext], Detector]) -> Callable[[DetectorContext], Detector]:
        DETECTORS[name] = factory
        OPTIONS[name] = dict(options or {})
        if needs_decoder:
            NEEDS_DECODER.add(name)
        return factory

    return deco


def option_for(err: DetectorParameterError) -> str | None:
    """The option (an ``evaluate`` config key's name) that set the parameter ``err`` is about, if known."""
    return OPTIONS.get(err.detector, {}).get(err.param)


def uses_decoder(methods: list[str]) -> bool:
    return any(m in NEEDS_DECODER for m in methods)


def final_layer(classifier: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``W`` (K x D) and ``b`` (K) of the classifier's last linear layer, float64 on the CPU."""
    linear = classifier.linear  # type: ignore[attr-defined]
    w = linear.weight.detach().to("cpu", torch.float64)
    b = linear.bias.detach().to("cpu", torch.float64) if linear.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    return w, b


def energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Free energy ``-T logsumexp(f/T)``: low for ID, high for OOD (Liu et al. 2020)."""
    return -temperature * torch.logsumexp(logits.double() / temperature, dim=1)

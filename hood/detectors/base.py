"""One interface for every detector, so ``evaluate`` loops over them without knowing any of them.

A detector is a plain class. Its constructor takes what it reads (the classifier, or its final ``nn.Linear``;
nothing at all for those that read only features and logits) and its parameters as keyword-only arguments,
named and defaulted as in its paper, written there once: ``hood evaluate`` sets them by those names
(``evaluate.params``), the Python API takes them as they are, and :meth:`Detector.settings` reads them back,
which is what a cached fit and a stored threshold were made under.

Two ways in:

- the engine's: :meth:`~Detector.fit_features` learns from ID training features (``needs_fit``) and
  :meth:`~Detector.score_features` scores a :class:`FeatureSet`, larger = more OOD. ``evaluate`` extracts the
  features of each data set once and every detector reads them; the few that must run the classifier
  themselves (ODIN and AdaSCALE perturb the input, NAC differentiates through it) set ``needs_images`` and
  implement :meth:`~Detector.score_images`, and :meth:`~Detector.fit_on_images` where they learn from ID images.
  :meth:`~Detector.state` / :meth:`~Detector.load_state` let a run cache a fit.
- the user's: :meth:`~Detector.fit` and :meth:`~Detector.predict` take images (a DataLoader, a tensor, an
  array) and run the model on them one batch at a time, or take ``(features, logits)`` arrays.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import nn

from hood.data.inputs import arrays, batches, is_arrays
from hood.engine.features import FeatureSet, extract_features
from hood.engine.runtime import resolve_device
from hood.errors import DetectorParameterError, HoodError
from hood.models.adapter import ModelAdapter, final_layer

BATCH = 128  # images per forward pass (the engine's CPU batch: larger ones run no faster there)
F = TypeVar("F", bound=Callable[..., Any])


def plain_errors(fn: F) -> F:
    """The user's side raises ValueError/TypeError: a known failure of the engine (a damaged file, a diverged
    training) becomes a ValueError with the same one-line message."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HoodError as err:
            if isinstance(err, ValueError):
                raise
            raise ValueError(str(err)) from None

    return wrapper  # type: ignore[return-value]


def device_of(spec: str | torch.device) -> torch.device:
    """A device from ``"cpu"``, ``"cuda"``, ``"auto"`` or a torch.device; one that is not here is a ValueError."""
    if isinstance(spec, torch.device):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"device must be a string such as 'cpu', 'cuda' or 'auto', got a {type(spec).__name__}")
    try:
        return resolve_device(spec)
    except HoodError:
        raise ValueError(f"device {spec!r} is not available here; use 'cpu' or 'auto'") from None


def energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Free energy ``-T logsumexp(f/T)``: low for ID, high for OOD (Liu et al. 2020)."""
    return -temperature * torch.logsumexp(logits.double() / temperature, dim=1)


def labels_of(labels: Any, n: int) -> torch.Tensor:
    """The ID classes given to :meth:`Detector.fit`, one per sample, as a long tensor."""
    y = torch.cat([torch.as_tensor(v).reshape(-1) for v in labels]) if isinstance(labels, list) else torch.as_tensor(np.asarray(labels))
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{len(y.reshape(-1))} labels for {n} ID samples; give one class per sample")
    if y.is_floating_point() and not bool((y == y.round()).all()):
        raise ValueError("labels must be class indices (integers)")
    return y.long()


class Detector:
    """Base class; ``name`` is the method name ``hood evaluate --methods`` knows it by."""

    name: ClassVar[str] = ""
    needs_fit: ClassVar[bool] = False  # learns from ID training data (fit / fit_features)
    needs_labels: ClassVar[bool] = False  # ... and needs their classes
    needs_images: ClassVar[bool] = False  # runs the classifier itself (score_images)
    needs_final_layer: ClassVar[bool] = False  # reads the final layer's weight and bias
    needs_decoder: ClassVar[bool] = False  # reads a trained heatmap decoder
    num_maps: int = 0  # classifier stage maps the detector reads (a decoder's skip inputs)

    def __init__(self, model: nn.Module | None = None, *, device: str | torch.device = "auto", batch_size: int = BATCH,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, linear: str | None = None) -> None:
        """``model``: the classifier (any classification ``nn.Module``, whose final ``nn.Linear`` gives the
        logits; ``linear`` names it when it is not the last one registered) or that final layer alone.
        ``mean`` / ``std``: the normalization the model was trained with (ImageNet's by default); images are
        given unnormalized. ``device`` and ``batch_size``: where and how many images a forward pass runs."""
        self.adapter = ModelAdapter(model, linear, None, mean, std)
        self.device = device_of(device)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = batch_size
        if self.needs_final_layer:
            if model is None:
                raise ValueError(f"{type(self).__name__} reads the model's final layer; pass the model (or its final nn.Linear): "
                                 f"hood.{type(self).__name__}(model)")
            self.weight, self.bias = final_layer(self.adapter.final_layer())

    @property
    def model(self) -> nn.Module | None:
        return self.adapter.model

    @classmethod
    def keywords(cls) -> dict[str, Any]:
        """The detector's parameters with their defaults: the keyword-only arguments its constructor adds."""
        runner = inspect.signature(Detector.__init__).parameters
        own = inspect.signature(cls.__init__).parameters
        return {n: p.default for n, p in own.items() if p.kind is p.KEYWORD_ONLY and n not in runner}

    def settings(self) -> dict[str, Any]:
        """Every parameter the scores depend on, by its constructor name, as in force now."""
        return {n: getattr(self, n) for n in self.keywords()}

    # --- the engine's side: feature sets --------------------------------------------------------------

    def check_fit_rows(self, n: int) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Refuse, before any work, parameters that ``n`` ID training rows cannot serve (KNN's ``k``)."""

    def fit_features(self, feats: FeatureSet) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Learn from the ID training features; nothing for detectors that need no fit."""

    def score_features(self, feats: FeatureSet) -> np.ndarray:
        """OOD score per row of ``feats``, larger = more OOD."""
        raise NotImplementedError(f"{self.name} scores images, not features")

    def score_images(self, images: torch.Tensor) -> np.ndarray:
        """OOD score per uint8 image, for detectors that must run the classifier themselves."""
        raise NotImplementedError(f"{self.name} scores features, not images")

    def fit_on_images(self, images: torch.Tensor, labels: torch.Tensor | None) -> None:
        """Learn from uint8 ID training images (and their classes, where known), for detectors that run the
        classifier themselves to fit (``needs_images`` and ``needs_fit``)."""
        raise NotImplementedError(f"{self.name} fits on features, not images")

    def state(self) -> dict[str, Any]:
        """What fitting learned, as tensors and numbers, so a run can cache it."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what :meth:`state` returned."""

    @property
    def fitted(self) -> bool:
        return not self.needs_fit or all(v is not None for v in self.state().values())

    # --- the user's side: images or (features, logits) arrays --------------------------------------------

    @plain_errors
    def fit(self, data: Any, labels: Any = None) -> Detector:
        """Learn from ID training data: images (a DataLoader of images or of ``(images, labels)``, a tensor,
        an array) or ``(features, logits)`` arrays; ``labels``, the classes of the ID data where the data does
        not carry them (Mahalanobis needs them). Returns the detector."""
        if not self.needs_fit:
            return self
        found: list[torch.Tensor] = []
        if self.needs_images:
            if is_arrays(data):
                raise ValueError(f"{type(self).__name__} runs the model on the images; fit it on images, not (features, logits) arrays")
            parts = list(batches(data, self.batch_size, found))
            if not parts or sum(len(p) for p in parts) == 0:
                raise ValueError("the ID data holds no images")
            images = torch.cat(parts)
            given = labels if labels is not None else found
            self.fit_on_images(images, labels_of(given, len(images)) if labels is not None or found else None)
            return self
        feats = FeatureSet(*arrays(data)) if is_arrays(data) else self._features_of(data, found)
        self._check_width(feats)
        if labels is not None or found:
            feats.labels = labels_of(labels if labels is not None else found, len(feats))
            classes = feats.logits.shape[1]
            if len(feats.labels) and not 0 <= int(feats.labels.min()) <= int(feats.labels.max()) < classes:
                raise ValueError(f"labels must be class indices in [0, {classes - 1}] (the model has {classes} logits), got "
                                 f"{int(feats.labels.min())} to {int(feats.labels.max())}; give each ID sample its class index")
        if self.needs_labels and feats.labels is None:
            raise ValueError(f"{type(self).__name__} needs the classes of the ID data: a DataLoader of (images, labels), "
                             f"or fit(data, labels=...)")
        self.fit_features(feats)
        return self

    @plain_errors
    def predict(self, x: Any) -> np.ndarray:
        """OOD scores (larger = more OOD) of images or of ``(features, logits)`` arrays."""
        if not self.fitted:
            raise ValueError(f"{type(self).__name__} is not fitted: call fit(id_data) first")
        if is_arrays(x):
            if self.needs_images:
                raise ValueError(f"{type(self).__name__} runs the model on the images; it cannot score (features, logits) arrays")
            feats = FeatureSet(*arrays(x))
            self._check_width(feats)
            return np.asarray(self.score_features(feats))
        out = []
        for batch in batches(x, self.batch_size):
            if self.needs_images:
                out.append(np.asarray(self.score_images(batch)))
            else:
                out.append(np.asarray(self.score_features(self.features(batch))))
        if not out:
            raise ValueError("no images to score")
        return np.concatenate(out)

    def _check_width(self, feats: FeatureSet) -> None:
        """Features given as arrays must be what the final layer reads: of another width, a detector that reads
        that layer would fail deep in a matrix product."""
        if self.needs_final_layer and feats.features.shape[1] != self.weight.shape[1]:
            raise ValueError(f"{type(self).__name__} reads the features the model's final layer takes, {self.weight.shape[1]} "
                             f"wide; these are {feats.features.shape[1]} wide: pass that layer's input features (or the "
                             f"final layer of the model that made these)")

    def features(self, images: torch.Tensor) -> FeatureSet:
        """Features, logits (and the stage maps this detector reads) of one uint8 batch, through the model."""
        model = self.adapter.classifier(images.shape[-1]).to(self.device)
        return extract_features(model, images, self.device, self.batch_size, self.num_maps)

    def _features_of(self, data: Any, labels: list[torch.Tensor]) -> FeatureSet:
        """Features and logits of every image of ``data``, streamed; a DataLoader's labels go to ``labels``."""
        parts = [self.features(b) for b in batches(data, self.batch_size, labels)]
        if not parts:
            raise ValueError("the ID data holds no images")
        return FeatureSet(torch.cat([p.features for p in parts]), torch.cat([p.logits for p in parts]))


def as_number(detector: str, param: str, value: Any, integer: bool = False) -> float | int:
    """``value`` as a float (or an int), or the detector's error saying it is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DetectorParameterError(detector, param, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
    if integer:
        if float(value) != int(value):
            raise DetectorParameterError(detector, param, f"must be an integer, got {value!r}")
        return int(value)
    number = float(value)
    if not np.isfinite(number):
        raise DetectorParameterError(detector, param, f"must be a finite number, got {value!r}")
    return number

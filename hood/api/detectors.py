"""Detectors for the model a user already has: ``fit`` on ID data, ``predict`` scores (larger = more OOD).

Each class is a thin layer over the engine and the detectors ``hood evaluate`` runs: the heatmap decoder is
trained by :func:`hood.engine.decoder_training.fit_decoder` on features from
:func:`hood.engine.features.extract_features`, and the baselines are the registered detectors of
:mod:`hood.detectors`, so a score here is the score the command line computes.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import nn

from hood.api.inputs import arrays, batches, collect, is_arrays
from hood.config import DecoderConfig
from hood.detectors import DETECTORS, Detector, DetectorContext
from hood.detectors.heatmap import HeatmapDetector as _HeatmapScorer
from hood.engine.decoder_training import build_decoder_data, fit_decoder, sample_ood_indices
from hood.engine.features import FeatureSet, extract_features
from hood.engine.heatmaps import STUCK_CHECK_IMAGES, stuck_pixels, stuck_warning
from hood.engine.noise_floor import measure_noise_floor
from hood.engine.runtime import resolve_device, seeded_indices
from hood.errors import HoodError
from hood.models.adapter import IMAGENET_MEAN, IMAGENET_STD, WrappedClassifier, decoder_spec_of, find_final_linear
from hood.models.base import Classifier
from hood.models.checkpoint import LoadedClassifier, classifier_fingerprint, load_decoder, read_decoder_checkpoint, save_decoder
from hood.models.decoder import HeatmapDecoder
from hood.progress import NullReporter, Reporter

BATCH = 128  # images per forward pass (the engine's CPU batch: larger ones run no faster there)
F = TypeVar("F", bound=Callable[..., Any])


def plain_errors(fn: F) -> F:
    """The API raises ValueError/TypeError: a known failure of the engine becomes a ValueError, same message."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HoodError as err:
            raise ValueError(str(err)) from None

    return wrapper  # type: ignore[return-value]


def device_of(spec: str | torch.device) -> torch.device:
    if isinstance(spec, torch.device):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"device must be a string such as 'cpu', 'cuda' or 'auto', got a {type(spec).__name__}")
    try:
        return resolve_device(spec)
    except HoodError:
        raise ValueError(f"device {spec!r} is not available here; use 'cpu' or 'auto'") from None


class ModelAdapter:
    """The user's model as the engine's :class:`Classifier`, wrapped once the input size is known."""

    def __init__(self, model: nn.Module | None, linear: str | None, skip_layers: Sequence[str] | None,
                 mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got a {type(model).__name__}")
        self.model, self.linear, self.skip_layers = model, linear, skip_layers
        own = isinstance(model, Classifier)
        if own and (mean is not None or std is not None or linear is not None):
            raise ValueError("a hood classifier takes hood's own input normalization and final layer; drop mean, std and linear")
        self.mean = tuple(mean) if mean is not None else IMAGENET_MEAN
        self.std = tuple(std) if std is not None else IMAGENET_STD
        self._wrapped: Classifier | None = model if own else None
        if model is not None and not own:
            find_final_linear(model, linear)  # an unsupported model fails here, at construction

    def classifier(self, image_size: int) -> Classifier:
        if self.model is None:
            raise ValueError("scoring images needs the model; pass it when building the detector")
        if isinstance(self.model, Classifier):
            return self.model
        if not isinstance(self._wrapped, WrappedClassifier) or self._wrapped.image_size != image_size:
            self._wrapped = WrappedClassifier(self.model, image_size, self.linear, self.skip_layers, self.mean, self.std)
        return self._wrapped

    def final_layer(self) -> nn.Module:
        """A module whose ``linear`` is the model's final layer: all the feature-space detectors read of it."""
        if self.model is None:
            raise ValueError("this detector reads the model's final layer; pass the model when building it")
        holder = nn.Module()
        holder.linear = find_final_linear(self.model, self.linear)[1] if not isinstance(self.model, Classifier) else self.model.linear
        return holder


def score_stream(classifier_of: Callable[[int], Classifier], detector_of: Callable[[int], Detector], x: Any,
                 device: torch.device, batch_size: int) -> np.ndarray:
    """The detector's scores of every image of ``x``, one batch at a time: memory holds one batch and the
    scores. ``classifier_of(side)`` and ``detector_of(side)`` give them for the images' size."""
    out = []
    for batch in batches(x, batch_size):
        model = classifier_of(batch.shape[-1]).to(device)
        detector = detector_of(batch.shape[-1])
        num_maps = detector.num_maps
        if detector.needs_images:
            out.append(np.asarray(detector.score_images(batch)))
        else:
            out.append(np.asarray(detector.score(extract_features(model, batch, device, batch_size, num_maps))))
    if not out:
        raise ValueError("no images to score")
    return np.concatenate(out)


def features_of(classifier_of: Callable[[int], Classifier], x: Any, device: torch.device, batch_size: int,
                labels: list[torch.Tensor] | None = None) -> FeatureSet:
    """Features and logits of every image of ``x`` (no stage maps), streamed; the labels a DataLoader
    yields beside the images are appended to ``labels``."""
    parts = [extract_features(classifier_of(b.shape[-1]).to(device), b, device, batch_size)
             for b in batches(x, batch_size, labels)]
    if not parts:
        raise ValueError("the ID data holds no images")
    return FeatureSet(torch.cat([p.features for p in parts]), torch.cat([p.logits for p in parts]))


class HeatmapDetector:
    """The paper's detector for any classifier: a decoder trained to draw, for each image, the change that
    would make it look like the classifier's ID data; the score is the heatmap's mean magnitude.

    ``model``: a classification ``nn.Module`` whose output is the logits of its final ``nn.Linear`` (any
    torchvision classifier); ``linear`` names that layer when it is not the last one registered. ``mean`` and
    ``std``: the normalization the model was trained with (ImageNet's by default); images are given
    unnormalized, as uint8 or floats in [0, 1]. ``fw_layers`` > 1 adds that many minus one stage maps of the
    model as decoder skip inputs (``skip_layers`` names them; by default the deepest stages).
    """

    def __init__(self, model: nn.Module, *, fw_layers: int = 1, linear: str | None = None,
                 skip_layers: Sequence[str] | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, batch_size: int = BATCH) -> None:
        if model is None:
            raise ValueError("HeatmapDetector needs the classifier: HeatmapDetector(model)")
        if not isinstance(fw_layers, int) or not 1 <= fw_layers <= 4:
            raise ValueError(f"fw_layers must be 1, 2, 3 or 4, got {fw_layers!r}")
        self.adapter = ModelAdapter(model, linear, skip_layers, mean, std)
        self.fw_layers, self.batch_size = fw_layers, int(batch_size)
        self.decoder: HeatmapDecoder | None = None
        self.image_size: int | None = None
        self.device = torch.device("cpu")
        self.losses: list[float] = []
        self.stuck_pixels: int | None = None  # after fit: heatmap pixels lit on every ID image (0 = healthy)

    @property
    def model(self) -> nn.Module:
        return self.adapter.model  # type: ignore[return-value]

    @plain_errors
    def fit(self, id_loader: Any, outlier_loader: Any, epochs: int = 150, device: str | torch.device = "auto",
            num_ood: int | None = None, lr: float = 2e-4, batch_size: int = 200, seed: int = 0,
            noise_floor_quantile: float = 0.0, reporter: Reporter | None = None) -> HeatmapDetector:
        """Train the decoder on ID images and auxiliary outliers with the recipe of ``hood train-decoder``:
        features once, each outlier paired with its nearest same-class ID image, Adam 2e-4 (0.5, 0.999).

        ``num_ood`` outliers are drawn from ``outlier_loader`` (seeded; default: all of them).
        ``noise_floor_quantile`` > 0 (e.g. 0.99) takes that quantile of the heatmap pixel magnitudes on the ID
        images off every pixel afterwards (``decoder.noise_floor_quantile``); 0 keeps the paper's heatmap.
        """
        if not 0 <= noise_floor_quantile < 1:
            raise ValueError(f"noise_floor_quantile must be in [0, 1), got {noise_floor_quantile!r}")
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        if batch_size < 2:
            raise ValueError(f"batch_size must be at least 2 (the decoder has BatchNorm), got {batch_size}")
        self.device = device_of(device)
        id_images = collect(id_loader, "ID data")
        ood_images = collect(outlier_loader, "outlier data")
        if id_images.shape[-1] != ood_images.shape[-1]:
            raise ValueError(f"ID images are {id_images.shape[-1]} pixels a side, outliers {ood_images.shape[-1]}; resize them to one size")
        if num_ood is not None and num_ood < len(ood_images):
            ood_images = ood_images[sample_ood_indices(len(ood_images), num_ood, seed)]
        size = id_images.shape[-1]
        model = self.adapter.classifier(size).to(self.device)
        spec = decoder_spec_of(model, size, self.fw_layers)
        feats = extract_features(model, torch.cat([id_images, ood_images]), self.device, self.batch_size, self.fw_layers - 1)
        data, _ = build_decoder_data(id_images, ood_images, feats, self.device)
        with torch.random.fork_rng(devices=[]):  # a seeded initialization that leaves the caller's RNG alone
            torch.manual_seed(seed)
            decoder = HeatmapDecoder(spec)
        ids = feats.features[: len(id_images)]
        decoder.set_feature_range(float(ids.min()), float(ids.max()))
        cfg = DecoderConfig(epochs=epochs, lr=lr, batch_size=batch_size, fw_layers=self.fw_layers)
        self.losses = fit_decoder(decoder, data, cfg, seed, self.device, reporter=reporter or NullReporter())
        check = feats.take(seeded_indices(len(id_images), STUCK_CHECK_IMAGES, seed))
        self.stuck_pixels = stuck_pixels(decoder, check, self.device, self.batch_size)
        if self.stuck_pixels:
            warnings.warn(stuck_warning(self.stuck_pixels, spec.out_size**2, "fit again with another seed"), RuntimeWarning, stacklevel=3)
        if noise_floor_quantile > 0:  # on the ID images it trained on: the API is given no others
            id_feats = feats.take(torch.arange(len(id_images)))
            decoder.noise_floor.fill_(measure_noise_floor(decoder, id_feats, noise_floor_quantile, self.device, self.batch_size))
        # back in the layout a saved decoder loads in (training ran channels-last): the scores of this
        # detector, of the same one saved and loaded, and of the command line on it are then the same bits
        self.decoder, self.image_size = decoder.eval().to(memory_format=torch.contiguous_format), size
        return self

    def _scorer(self, device: str | torch.device | None) -> _HeatmapScorer:
        if self.decoder is None:
            raise ValueError("the detector is not fitted: call fit(id_loader, outlier_loader) or HeatmapDetector.load(path, model)")
        if device is not None:
            self.device = device_of(device)
        return _HeatmapScorer(self.decoder, self.device, self.batch_size)

    def _classifier(self, size: int) -> Classifier:
        if size != self.image_size:
            raise ValueError(f"the decoder draws {self.image_size}x{self.image_size} heatmaps; resize the images to that size (got {size})")
        return self.adapter.classifier(size)

    @plain_errors
    def predict(self, x: Any, device: str | torch.device | None = None) -> np.ndarray:
        """OOD scores of the images of ``x`` (a DataLoader, a tensor or an array), larger = more OOD."""
        det = self._scorer(device)
        return score_stream(self._classifier, lambda _: det, x, self.device, self.batch_size)

    @plain_errors
    def heatmaps(self, x: Any, device: str | torch.device | None = None) -> torch.Tensor:
        """``N x 3 x H x W`` heatmaps in [-1, 1] (CPU): the change the decoder draws to make each image ID-like."""
        det = self._scorer(device)
        out = [det.heatmaps(extract_features(self._classifier(b.shape[-1]).to(self.device), b, self.device,
                                             self.batch_size, det.num_maps)) for b in batches(x, self.batch_size)]
        if not out:
            raise ValueError("no images to draw heatmaps of")
        return torch.cat(out)

    def _loaded(self) -> LoadedClassifier:
        model = self._classifier(self.image_size or 0)
        return LoadedClassifier(model=model, arch=type(self.model).__name__, num_classes=model.num_classes,
                                classes=None, fingerprint=classifier_fingerprint(model))

    @plain_errors
    def save(self, path: str | Path) -> None:
        """Write the decoder and how to rebuild the detector on the same model (the model itself is not saved)."""
        if self.decoder is None:
            raise ValueError("the detector is not fitted; there is nothing to save")
        a = self.adapter
        meta = {"image_size": self.image_size, "fw_layers": self.fw_layers, "linear": a.linear,
                "skip_layers": None if a.skip_layers is None else list(a.skip_layers),
                "mean": list(a.mean), "std": list(a.std), "losses": self.losses}
        save_decoder(self.decoder.cpu(), self._loaded(), path, {"api": meta})
        self.decoder.to(self.device)

    @classmethod
    @plain_errors
    def load(cls, path: str | Path, model: nn.Module, device: str | torch.device = "auto") -> HeatmapDetector:
        """A detector saved with :meth:`save`, on the same ``model`` (checked by its final layer's weights)."""
        ckpt = read_decoder_checkpoint(path)
        meta = (ckpt.get("meta") or {}).get("api")
        if not isinstance(meta, dict):
            raise ValueError(f"{path} is a decoder of a command-line run; open that run with hood.load_run(run_dir)")
        own = isinstance(model, Classifier)
        det = cls(model, fw_layers=int(meta["fw_layers"]), linear=meta["linear"], skip_layers=meta["skip_layers"],
                  mean=None if own else meta["mean"], std=None if own else meta["std"])
        det.image_size = int(meta["image_size"])
        det.losses = [float(v) for v in meta.get("losses", [])]
        expected = (ckpt.get("classifier") or {}).get("fingerprint")
        if expected != classifier_fingerprint(det._classifier(det.image_size)):
            raise ValueError(f"{path} was trained on another model (its final layer's weights differ); load it with the model it was fitted on")
        det.decoder = load_decoder(path)[0]
        det.device = device_of(device)
        return det


class Baseline:
    """A post-hoc baseline of ``hood evaluate`` by its method name (``"vim"``, ``"knn"``, ...), with ``fit``
    and ``predict`` on images (with the model) or on ``(features, logits)`` arrays (``model`` only where the
    method reads the final layer: ViM, ReAct; ODIN needs the model and images)."""

    method: ClassVar[str] = ""
    needs_model: ClassVar[bool] = False

    def __init__(self, model: nn.Module | None = None, *, method: str | None = None, device: str | torch.device = "auto",
                 linear: str | None = None, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 batch_size: int = BATCH, **params: Any) -> None:
        self.method = method or self.method
        if self.method not in DETECTORS or "+" in self.method:
            raise ValueError(f"no baseline {self.method!r}; available: {', '.join(m for m in DETECTORS if '+' not in m)}")
        if self.needs_model and model is None:
            raise ValueError(f"{type(self).__name__} reads the model's final layer; pass the model: hood.{type(self).__name__}(model)")
        self.adapter = ModelAdapter(model, linear, None, mean, std)
        self.device, self.batch_size, self.params = device_of(device), int(batch_size), params
        self._det: Detector | None = None
        self._size = 0  # input side the detector was built for (ODIN runs the model itself)

    def _build(self, classifier: nn.Module) -> Detector:
        return DetectorContext(classifier=classifier, device=self.device, options=dict(self.params)).detector(self.method)

    def _detector(self, size: int = 0) -> Detector:
        """The registered detector. Most read the model's final layer alone, so one serves images and arrays
        alike; one that perturbs images (ODIN) runs the whole model, wrapped for the images' size."""
        a = self.adapter
        if self._det is None:
            self._det = self._build(a.final_layer() if a.model is not None else nn.Module())
        if self._det.needs_images and size and size != self._size:
            self._det, self._size = self._build(a.classifier(size).to(self.device)), size
        return self._det

    @plain_errors
    def fit(self, id_data: Any, labels: Any = None) -> Baseline:
        """Learn from ID training data: images (a DataLoader of images or (images, labels), a tensor, an
        array) or ``(features, logits)`` arrays. ``labels``: the classes of the ID data, for Mahalanobis, when
        the data does not carry them."""
        det = self._detector()
        if not det.needs_fit:
            return self
        if is_arrays(id_data):
            feats = FeatureSet(*arrays(id_data))
        else:
            found: list[torch.Tensor] = []
            feats = features_of(self.adapter.classifier, id_data, self.device, self.batch_size, found)
            labels = found if labels is None and found else labels
        if labels is not None:
            y = torch.cat([torch.as_tensor(v) for v in labels]) if isinstance(labels, list) else torch.as_tensor(np.asarray(labels))
            if len(y) != len(feats):
                raise ValueError(f"{len(y)} labels for {len(feats)} ID samples; give one class per sample")
            feats.labels = y.long()
        elif self.method == "mahalanobis":
            raise ValueError("Mahalanobis needs the classes of the ID data: a DataLoader of (images, labels), or fit(data, labels=...)")
        det.fit(feats)
        return self

    @plain_errors
    def predict(self, x: Any) -> np.ndarray:
        """OOD scores, larger = more OOD, of images or of ``(features, logits)`` arrays."""
        if is_arrays(x):
            det = self._detector()
            if det.needs_images:
                raise ValueError(f"{self.method} perturbs the input images; it cannot score (features, logits) arrays")
            return np.asarray(det.score(FeatureSet(*arrays(x))))
        return score_stream(self.adapter.classifier, self._detector, x, self.device, self.batch_size)


def _baseline(name: str, method: str, doc: str, needs_model: bool = False, **param_names: str) -> type[Baseline]:
    """A named Baseline class whose keyword parameters (``k=50``) map to the detector's (``knn_k``)."""

    def __init__(self: Baseline, model: nn.Module | None = None, **kwargs: Any) -> None:
        params = {param_names.get(k, k): v for k, v in kwargs.items() if k in param_names}
        rest = {k: v for k, v in kwargs.items() if k not in param_names}
        for key, value in params.items():
            if value is None:
                continue
            zero_ok = key == "odin_epsilon"  # no perturbation is a valid ODIN (temperature scaling alone)
            if not isinstance(value, (int, float)) or value < 0 or (value == 0 and not zero_ok):
                word = "a non-negative" if zero_ok else "a positive"
                raise ValueError(f"{name}: {next(k for k, v in param_names.items() if v == key)} must be {word} number, got {value!r}")
        Baseline.__init__(self, model, **rest, **{k: v for k, v in params.items() if v is not None})

    return type(name, (Baseline,), {"method": method, "needs_model": needs_model, "__init__": __init__, "__doc__": doc})


MSP = _baseline("MSP", "msp", "Maximum softmax probability (Hendrycks & Gimpel 2017), negated.")
Energy = _baseline("Energy", "energy", "Free energy of the logits (Liu et al. 2020).")
MaxLogit = _baseline("MaxLogit", "maxlogit", "The largest logit, negated (Hendrycks et al. 2022).")
KNN = _baseline("KNN", "knn", "Distance to the k-th nearest ID training feature, k=50 (Sun et al. 2022).", k="knn_k")
Mahalanobis = _baseline("Mahalanobis", "mahalanobis", "Class-conditional Gaussian distance with a shared covariance (Lee et al. 2018).")
ViM = _baseline("ViM", "vim", "Virtual-logit matching (Wang et al. 2022); dim = principal subspace size.", needs_model=True, dim="vim_dim")
ReAct = _baseline("ReAct", "react", "Energy after clipping features at a percentile of ID activations (Sun et al. 2021).",
                  needs_model=True, percentile="react_percentile")
ASH = _baseline("ASH", "ash", "ASH-S: energy of the features pruned below their own p-th percentile and rescaled "
                "(Djurisic et al. 2023).", needs_model=True, percentile="ash_percentile")
SCALE = _baseline("SCALE", "scale", "Energy of the features rescaled as ASH-S does, nothing pruned (Xu et al. 2024).",
                  needs_model=True, percentile="scale_percentile")
GEN = _baseline("GEN", "gen", "Generalized entropy of the M largest softmax probabilities (Liu et al. 2023).",
                gamma="gen_gamma", m="gen_m")
FDBD = _baseline("FDBD", "fdbd", "Distance to the decision boundaries, relative to the distance to the ID mean "
                 "(Liu & Qin 2024).", needs_model=True)
ODIN = _baseline("ODIN", "odin", "Temperature-scaled softmax on perturbed inputs (Liang et al. 2018).", needs_model=True,
                 temperature="odin_temperature", epsilon="odin_epsilon")


class HeatmapViM:
    """The heatmap score and ViM's, each standardized on ID images, summed (ViM's weighted ``vim_weight``).

    ``fit`` takes ID images the decoder was *not* trained on (e.g. a held-out part of the training set):
    ViM is fitted on them and both scores' ID mean and spread are measured on them.
    """

    method = "heatmap+vim"

    def __init__(self, heatmap: HeatmapDetector, dim: int | None = None, vim_weight: float | None = None) -> None:
        if not isinstance(heatmap, HeatmapDetector):
            raise TypeError(f"{type(self).__name__} combines a fitted hood.HeatmapDetector with post-hoc scores, "
                            f"got a {type(heatmap).__name__}")
        self.heatmap = heatmap
        # what is not given falls back to `hood evaluate`'s defaults (DetectorContext.param)
        self._options: dict[str, Any] = {} if dim is None else {"vim_dim": int(dim)}
        if vim_weight is not None:
            self._options["vim_weight"] = float(vim_weight)
        self._det: Detector | None = None
        self._fitted = False

    def _detector(self) -> Detector:
        hm = self.heatmap
        if hm.decoder is None:
            raise ValueError(f"fit the HeatmapDetector first (or load it): {type(self).__name__} combines its scores")
        if self._det is None:
            ctx = DetectorContext(classifier=hm._classifier(hm.image_size or 0).to(hm.device), device=hm.device,
                                  decoder=hm.decoder, options=dict(self._options))
            self._det = ctx.detector(self.method)
        return self._det

    @plain_errors
    def fit(self, id_data: Any) -> HeatmapViM:
        det = self._detector()
        hm = self.heatmap
        images = collect(id_data, "ID data")
        model = hm._classifier(images.shape[-1]).to(hm.device)
        rows = det.map_rows(len(images)) if det.num_maps else None
        det.fit(extract_features(model, images, hm.device, hm.batch_size, det.num_maps, map_rows=rows))
        self._fitted = True
        return self

    @plain_errors
    def predict(self, x: Any) -> np.ndarray:
        if not self._fitted:
            raise ValueError(f"{type(self).__name__} is not fitted: call fit(id_data) with ID images the decoder was not trained on")
        det = self._detector()
        hm = self.heatmap
        return score_stream(hm._classifier, lambda _: det, x, hm.device, hm.batch_size)


class HeatmapViMScale(HeatmapViM):
    """The recommended combination: :class:`HeatmapViM` plus SCALE's score weighted ``scale_weight``
    (``heatmap+vim+scale``); SCALE reads the final layer, so the classifier must expose it."""

    method = "heatmap+vim+scale"

    def __init__(self, heatmap: HeatmapDetector, dim: int | None = None, vim_weight: float | None = None,
                 scale_weight: float | None = None, percentile: float | None = None) -> None:
        super().__init__(heatmap, dim, vim_weight)
        given = (("scale_weight", scale_weight), ("scale_percentile", percentile))
        self._options.update({k: float(v) for k, v in given if v is not None})

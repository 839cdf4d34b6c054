"""The paper's detector (Hornauer & Belagiannis, "Heatmap-based Out-of-Distribution Detection", WACV 2023,
https://arxiv.org/abs/2211.08115): a decoder trained to draw, for each image, the change that would make it look
like the classifier's ID data; the score is the pixel mean of the channel-max of ``|h|`` (less the decoder's
noise floor, when it has one: docs/method.md).

The same class is the detector ``hood evaluate`` runs (built on a trained decoder) and the one the Python API
trains (:meth:`HeatmapDetector.fit`, the recipe of ``hood train-decoder``).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hood.data.inputs import batches, collect
from hood.detectors.base import Detector, plain_errors
from hood.engine.decoder_training import decoder_settings, train_heatmap_decoder
from hood.engine.features import FeatureSet
from hood.engine.heatmaps import heatmap_batches, stuck_warning
from hood.engine.runtime import seeded_indices
from hood.fingerprint import module_fingerprint
from hood.models.adapter import decoder_spec_of
from hood.models.base import Classifier
from hood.models.checkpoint import LoadedClassifier, classifier_fingerprint, load_decoder, read_decoder_checkpoint, save_decoder
from hood.models.decoder import HeatmapDecoder, heatmap_score
from hood.progress import BarReporter, NullReporter, Reporter

SCORE_BATCH = 500  # rows per decoder pass when scoring features


class HeatmapDetector(Detector):
    """The heatmap score of a decoder trained for ``model``; ``fw_layers`` > 1 adds that many minus one of the
    model's stage maps as decoder skip inputs (``skip_layers`` names them; by default the deepest stages).

    Built on a trained ``decoder`` (what ``hood evaluate`` does), or trained by :meth:`fit`.
    """

    name = "heatmap"
    needs_decoder = True

    def __init__(self, model: nn.Module | None = None, decoder: HeatmapDecoder | None = None, *, fw_layers: int = 1,
                 skip_layers: Sequence[str] | None = None, **options: Any) -> None:
        super().__init__(model, **options)
        if isinstance(fw_layers, bool) or not isinstance(fw_layers, int) or not 1 <= fw_layers <= 4:
            raise ValueError(f"fw_layers must be 1, 2, 3 or 4, got {fw_layers!r}")
        self.adapter.skip_layers = skip_layers
        self.fw_layers, self.skip_layers = fw_layers, skip_layers
        self.decoder: HeatmapDecoder | None = None
        self.losses: list[float] = []
        self.stuck_pixels: int | None = None  # after fit: heatmap pixels lit on every ID image (0 = healthy)
        if decoder is not None:
            self._use(decoder)

    @classmethod
    def keywords(cls) -> dict[str, Any]:
        """None to set at scoring time: the heatmap's settings are its decoder's (``decoder.*``, train-decoder)."""
        return {}

    def settings(self) -> dict[str, Any]:
        """The decoder's fingerprint: a threshold or fit set on another decoder's scores does not apply."""
        return {} if self.decoder is None else {"decoder": self._fingerprint}

    def _use(self, decoder: HeatmapDecoder) -> None:
        self.decoder = decoder.to(self.device).eval()
        self._fingerprint = module_fingerprint(decoder)
        self.fw_layers = decoder.spec.fw_layers
        self.num_maps = self.fw_layers - 1

    @property
    def image_size(self) -> int | None:
        return None if self.decoder is None else self.decoder.spec.out_size

    @property
    def fitted(self) -> bool:
        return self.decoder is not None

    def _decoder(self) -> HeatmapDecoder:
        if self.decoder is None:
            raise ValueError("the detector is not fitted: call fit(id_data, outlier_data) or HeatmapDetector.load(path, model)")
        return self.decoder

    # --- scoring ------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def score_features(self, feats: FeatureSet) -> np.ndarray:
        return torch.cat([heatmap_score(h) for h in heatmap_batches(self._decoder(), feats, self.device, SCORE_BATCH)]).numpy()

    @torch.inference_mode()
    def heatmaps_of(self, feats: FeatureSet) -> torch.Tensor:
        """``N x 3 x H x W`` heatmaps in [-1, 1] (float32, CPU) of the rows of ``feats``."""
        return torch.cat(list(heatmap_batches(self._decoder(), feats, self.device, SCORE_BATCH)))

    def features(self, images: torch.Tensor) -> FeatureSet:
        size = self.image_size
        if images.shape[-1] != size:
            raise ValueError(f"the decoder draws {size}x{size} heatmaps; resize the images to that size (got {images.shape[-1]})")
        return super().features(images)

    @plain_errors
    def heatmaps(self, x: Any) -> torch.Tensor:
        """``N x 3 x H x W`` heatmaps in [-1, 1] (CPU) of the images of ``x``: the change the decoder draws to make
        each image ID-like."""
        self._decoder()
        out = [self.heatmaps_of(self.features(b)) for b in batches(x, self.batch_size)]
        if not out:
            raise ValueError("no images to draw heatmaps of")
        return torch.cat(out)

    # --- training (the recipe of hood train-decoder) -------------------------------------------------------

    @plain_errors
    def fit(self, id_data: Any, outlier_data: Any = None, *, seed: int = 0, progress: bool = True,
            reporter: Reporter | None = None, **settings: Any) -> HeatmapDetector:
        """Train the decoder on ID images and auxiliary outliers (a DataLoader, a tensor or an array each) with
        the recipe of ``hood train-decoder``: features once, each outlier paired with its nearest same-class ID
        image, Adam 2e-4 (0.5, 0.999), a seeded initialization.

        ``settings`` are the train-decoder settings by their ``decoder.*`` names (``epochs``, ``lr``,
        ``batch_size``, ``num_ood``, ``num_id``, ``prototype_k``, ``loss_weight``, ``noise_floor_quantile``, ...;
        docs/configuration.md), with the same defaults: ``num_ood`` outliers and ``num_id`` ID images are seeded
        draws from what is given. A noise floor is measured on the ID images given (the API is given no others).
        ``progress``: bars with the time left on stderr for each phase (features, prototypes, decoder epochs);
        False is silent. ``reporter``: your own :class:`hood.progress.Reporter` instead.
        """
        if outlier_data is None:
            raise ValueError("fit needs ID images and outliers: fit(id_data, outlier_data)")
        if "fw_layers" in settings:
            raise ValueError("fw_layers belongs to the detector: HeatmapDetector(model, fw_layers=...)")
        recipe = decoder_settings(fw_layers=self.fw_layers, **settings)
        id_images = collect(id_data, "ID data")
        ood_images = collect(outlier_data, "outlier data")
        if id_images.shape[-1] != ood_images.shape[-1]:
            raise ValueError(f"ID images are {id_images.shape[-1]} pixels a side, outliers {ood_images.shape[-1]}; resize them to one size")
        if recipe.num_ood < len(ood_images):
            ood_images = ood_images[seeded_indices(len(ood_images), recipe.num_ood, seed)]
        if recipe.num_id is not None and recipe.num_id < len(id_images):
            id_images = id_images[seeded_indices(len(id_images), recipe.num_id, seed)]
        size = id_images.shape[-1]
        model = self.adapter.classifier(size).to(self.device)
        spec = decoder_spec_of(model, size, self.fw_layers)
        shown = reporter or (BarReporter() if progress else NullReporter())
        with shown if isinstance(shown, BarReporter) else contextlib.nullcontext():
            trained = train_heatmap_decoder(model, spec, id_images, ood_images, recipe, seed, self.device,
                                            floor_images=id_images, floor_source="ID images it trained on",
                                            reporter=shown, batch_size=self.batch_size)
        self.losses, self.stuck_pixels = trained.losses, trained.stuck["pixels"]
        if self.stuck_pixels:
            warnings.warn(stuck_warning(self.stuck_pixels, trained.stuck["of"], "fit again with more epochs or another seed"),
                          RuntimeWarning, stacklevel=2)
        if trained.noise_floor is not None and "refused" in trained.noise_floor:
            warnings.warn(trained.noise_floor["refused"].replace("decoder.epochs", "epochs="), RuntimeWarning, stacklevel=2)
        self._use(trained.decoder)
        return self

    # --- files ---------------------------------------------------------------------------------------------

    def _loaded(self) -> LoadedClassifier:
        model = self.adapter.classifier(self.image_size or 0)
        return LoadedClassifier(model=model, arch=type(self.model).__name__, num_classes=model.num_classes,
                                classes=None, fingerprint=classifier_fingerprint(model))

    @plain_errors
    def save(self, path: str | Path) -> None:
        """Write the decoder and how to rebuild the detector on the same model (the model itself is not saved)."""
        decoder = self._decoder()
        a = self.adapter
        meta = {"image_size": self.image_size, "fw_layers": self.fw_layers, "linear": a.linear,
                "skip_layers": None if a.skip_layers is None else list(a.skip_layers),
                "mean": list(a.mean), "std": list(a.std), "losses": self.losses}
        save_decoder(decoder.cpu(), self._loaded(), path, {"api": meta})
        decoder.to(self.device)

    @classmethod
    @plain_errors
    def load(cls, path: str | Path, model: nn.Module, device: str | torch.device = "auto") -> HeatmapDetector:
        """A detector saved with :meth:`save`, on the same ``model`` (checked by the fingerprint of its whole state)."""
        ckpt = read_decoder_checkpoint(path)
        meta = _saved_settings(ckpt, path)
        own = isinstance(model, Classifier)
        det = cls(model, fw_layers=meta["fw_layers"], linear=meta["linear"], skip_layers=meta["skip_layers"],
                  mean=None if own else meta["mean"], std=None if own else meta["std"], device=device)
        expected = ckpt["classifier"].get("fingerprint") if isinstance(ckpt.get("classifier"), dict) else None
        if expected != classifier_fingerprint(det.adapter.classifier(meta["image_size"])):
            raise ValueError(f"{path} was trained on another model (its weights differ); load it with the model it was fitted on")
        det._use(load_decoder(path)[0])
        det.losses = [float(v) for v in meta["losses"]]
        return det


def _saved_settings(ckpt: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """What :meth:`HeatmapDetector.save` wrote beside the decoder, checked: a file edited or damaged after saving
    is one ValueError naming it, not a KeyError from deep inside ``load``."""
    meta = ckpt.get("meta")
    if isinstance(meta, dict) and "api" not in meta:
        raise ValueError(f"{path} is a decoder of a command-line run; open that run with hood.load_run(run_dir)")
    api = meta.get("api") if isinstance(meta, dict) else None

    def numbers(v: Any, size: int | None = None) -> bool:
        return (isinstance(v, list) and (size is None or len(v) == size)
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) for x in v))

    checks = {
        "image_size": lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
        "fw_layers": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4,
        "linear": lambda v: v is None or isinstance(v, str),
        "skip_layers": lambda v: v is None or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
        "mean": lambda v: numbers(v, 3), "std": lambda v: numbers(v, 3) and all(x > 0 for x in v),
        "losses": numbers,
    }
    bad = ["its saved settings"] if not isinstance(api, dict) else [k for k, ok in checks.items() if k not in api or not ok(api[k])]
    if bad:
        raise ValueError(f"{path} is damaged or was edited after saving ({', '.join(bad)} not as HeatmapDetector.save "
                         f"writes them); fit and save the detector again")
    return api

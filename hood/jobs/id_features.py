"""The ID training features a decoder run keeps (``id_features.pt``), so ``evaluate`` does not run the classifier
again on the rows ``train-decoder`` already ran it on.

``train-decoder`` computes the features and logits of the ID training rows it trains on; ``evaluate`` fits its
detectors on a draw of the same training split that holds those rows, and reads them back from here. The file
holds the rows (of the ID training split), a hash of each row's image, their features and logits (no stage maps:
gigabytes, and the combinations read those of rows the decoder never trained on) and a checksum of all four,
under a key of what the features were computed with: the classifier's fingerprint, the ID set, the image size
and the precision of the pass (bf16 on CUDA, float32 elsewhere). A file whose key, images or checksum do not
match is left unused with one log line, as a stale or damaged fit is refitted: the rows are extracted again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hood.config import Config
from hood.data.validation import complement, positions_in
from hood.engine.features import FeatureSet
from hood.engine.runtime import inference_precision
from hood.errors import HoodError
from hood.fileio import atomic_save_with
from hood.fingerprint import fingerprint, row_fingerprints
from hood.jobs.keys import differing, said
from hood.models.checkpoint import safe_load
from hood.progress import NullReporter, Reporter
from hood.runs import Run
from hood.version import __version__

FILE = "id_features.pt"
FORMAT = "hood.id_features"
_ARRAYS = ("rows", "images", "features", "logits")


def feature_key(classifier: str, cfg: Config, device: torch.device) -> dict[str, Any]:
    """What the features of an ID training row depend on besides its image (whose hash is stored per row)."""
    return {"classifier": classifier, "id_dataset": cfg.data.id, "image_size": cfg.data.image_size,
            "precision": inference_precision(device)}


def save_id_features(run: Run, feats: FeatureSet, rows: torch.Tensor, images: torch.Tensor, key: dict[str, Any],
                     reporter: Reporter | None = None) -> None:
    """Keep the features and logits of ``images``, rows ``rows`` of the ID training split, in the run.

    A write that fails (a full disk: the file is ~100 MB for ResNet18 on 50,000 rows) is one log line, not an error:
    the file only spares evaluate a pass, and failing here would leave the decoder just trained in a run never
    marked complete."""
    arrays = {"rows": rows.to(torch.int64).cpu(), "images": row_fingerprints(images),
              "features": feats.features.float().cpu(), "logits": feats.logits.float().cpu()}
    try:
        atomic_save_with(run.path / FILE, lambda fh: torch.save(
            {"format": FORMAT, "hood_version": __version__, "key": key, **arrays, "checksum": fingerprint(arrays.items())}, fh))
    except OSError as err:
        (reporter or NullReporter()).log(f"could not write {run.path / FILE} ({err.strerror or err}): the decoder is saved; "
                                         f"evaluate runs the classifier on its ID training rows again")


@dataclass
class SavedFeatures:
    """The saved rows found in a fit set: their positions in it (ascending), their features and logits."""

    at: torch.Tensor
    features: torch.Tensor
    logits: torch.Tensor

    def __len__(self) -> int:
        return len(self.at)

    def without(self, positions: torch.Tensor) -> SavedFeatures:
        """Less the rows at ``positions`` (those whose stage maps a fit reads: the file holds none)."""
        keep = ~torch.isin(self.at, positions.to(torch.long))
        return SavedFeatures(self.at[keep], self.features[keep], self.logits[keep])

    def others(self, n: int) -> torch.Tensor:
        """The positions of a fit set of ``n`` rows that are not saved: those the classifier still runs on."""
        return complement(n, self.at)[0]

    def join(self, part: FeatureSet | None, others: torch.Tensor, labels: torch.Tensor | None) -> FeatureSet:
        """The fit set's FeatureSet in its own row order: these rows, and ``part`` (the features of ``others``)
        beside them; its stage maps, of some of ``others``, keep their rows as positions in the fit set."""
        n = len(self) + len(others)
        features = torch.empty((n, self.features.shape[1]), dtype=torch.float32)
        logits = torch.empty((n, self.logits.shape[1]), dtype=torch.float32)
        features[self.at], logits[self.at] = self.features, self.logits
        maps, map_rows = None, None
        if part is not None:
            features[others], logits[others] = part.features, part.logits
            if part.maps is not None:
                maps = part.maps
                map_rows = others if part.map_rows is None else others[part.map_rows]
        return FeatureSet(features, logits, maps, labels, map_rows)


def read_id_features(run: Run, key: dict[str, Any], images: torch.Tensor, fit_rows: torch.Tensor | None,
                     reporter: Reporter) -> SavedFeatures | None:
    """The saved features of the fit set's rows (``images``, which are rows ``fit_rows`` of the training split,
    all of it when None) that the run's file holds; None without a file, or (said in one log line) with one
    that is damaged, was computed under another key or on other images."""
    path = Path(run.path) / FILE
    if not path.is_file():
        return None
    again = "the ID training rows it holds run through the classifier again"
    try:
        saved = _checked(safe_load(path))
    except HoodError as err:  # unreadable: the loader's line names the file
        reporter.log(f"{err}; {again}")
        return None
    except (ValueError, TypeError, RuntimeError, IndexError) as err:  # torch's errors on tensors of another shape or layout
        reporter.log(f"{path} is damaged ({err}); {again}")
        return None
    keys = differing(saved["key"], key, only=True)
    if keys:
        reporter.log(f"{path} was computed with {said(saved['key'], keys)}, this evaluate uses {said(key, keys)}; {again}")
        return None
    split = torch.arange(len(images)) if fit_rows is None else fit_rows.to(torch.long)
    at = positions_in(split, saved["rows"])
    found = at >= 0
    at = at[found]
    if not torch.equal(row_fingerprints(images, at), saved["images"][found]):
        reporter.log(f"{path} holds the features of other images than these rows of the ID training split; {again}")
        return None
    order = torch.argsort(at)
    return SavedFeatures(at[order], saved["features"][found][order], saved["logits"][found][order])


def _checked(saved: Any) -> dict[str, Any]:
    """The file's content when it is what :func:`save_id_features` wrote and unchanged since; else ValueError."""
    if not isinstance(saved, dict) or saved.get("format") != FORMAT or not isinstance(saved.get("key"), dict):
        raise ValueError(f"not a hood ID features file (format {saved.get('format') if isinstance(saved, dict) else None!r})")
    arrays = {k: saved.get(k) for k in _ARRAYS}
    if not all(isinstance(v, torch.Tensor) for v in arrays.values()):
        raise ValueError("an array is missing")
    if not all(v.layout == torch.strided for v in arrays.values()):
        raise ValueError("an array is not a dense tensor")
    rows, hashes, features, logits = (arrays[k] for k in _ARRAYS)
    if rows.dtype != torch.int64 or hashes.dtype != torch.int64 or rows.ndim != 1 or hashes.shape != rows.shape:
        raise ValueError("its rows are not what hood writes")
    n = len(rows)
    if features.dtype != torch.float32 or logits.dtype != torch.float32 or features.ndim != 2 or logits.ndim != 2 \
            or len(features) != n or len(logits) != n:
        raise ValueError(f"{n} rows, features of {tuple(features.shape)} and logits of {tuple(logits.shape)}")
    if n and (int(rows.min()) < 0 or len(torch.unique(rows)) != n):
        raise ValueError("its rows are not distinct rows of a split")
    if saved.get("checksum") != fingerprint(arrays.items()):
        raise ValueError("its checksum does not match: it changed after train-decoder wrote it")
    return saved

"""Running the frozen classifier once per data set (docs/method.md, defect 4) and keeping what it produced.

A :class:`FeatureSet` holds penultimate features, logits and, when a decoder needs skip connections,
the deepest stage maps in fp16. Every consumer (decoder training, each detector, visualize) reads the
same FeatureSet instead of re-running the classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hood.data.transforms import normalize
from hood.engine.runtime import MEMORY_FORMAT, autocast
from hood.models.adapter import eval_mode
from hood.models.base import Classifier
from hood.progress import NullReporter, Reporter

CPU_BATCH = 128


@dataclass
class FeatureSet:
    features: torch.Tensor  # N x D float32
    logits: torch.Tensor  # N x K float32
    maps: list[torch.Tensor] | None = None  # deepest stage maps, fp16, shallow to deep
    labels: torch.Tensor | None = None
    # the rows ``maps`` hold, ascending, when they hold only some (see extract_features' map_rows); None = all
    map_rows: torch.Tensor | None = None

    @property
    def preds(self) -> torch.Tensor:
        return self.logits.argmax(dim=1)

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def take(self, idx: torch.Tensor) -> FeatureSet:
        """Rows ``idx``; their stage maps too, which must then be among those kept (a decoder fed rows
        without maps would fail far from the cause)."""
        maps = None
        if self.maps is not None:
            at = idx
            if self.map_rows is not None:
                at = torch.searchsorted(self.map_rows, idx).clamp_max(max(len(self.map_rows) - 1, 0))
                if len(idx) and (len(self.map_rows) == 0 or not torch.equal(self.map_rows[at], idx)):
                    raise ValueError("rows without stage maps: extract them with these rows among map_rows")
            maps = [_rows(m, at) for m in self.maps]
        return FeatureSet(self.features[idx], self.logits[idx], maps, None if self.labels is None else self.labels[idx])

    def to(self, device: torch.device) -> FeatureSet:
        return FeatureSet(
            self.features.to(device),
            self.logits.to(device),
            None if self.maps is None else [m.to(device) for m in self.maps],
            None if self.labels is None else self.labels.to(device),
            self.map_rows,
        )


def extract_features(
    model: Classifier,
    images: torch.Tensor,
    device: torch.device,
    batch_size: int = 500,
    num_maps: int = 0,
    labels: torch.Tensor | None = None,
    reporter: Reporter | None = None,
    description: str = "features",
    map_rows: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
) -> FeatureSet:
    """Features, logits and the ``num_maps`` deepest stage maps of uint8 ``images``, on the CPU.

    ``map_rows`` keeps the maps of those rows only (features and logits of all). Why: the maps are most of
    the memory, ~115 KB per 32x32 image for WRN-40-2's three stages and ~230 KB for ResNet18's, so the
    50,000 ID training images that the baselines fit on would hold 6-11 GB of maps, while the decoder reads
    them only on the combinations' 10,000 fit rows. ``rows``: those images alone, in that order (the result's
    rows, which ``map_rows`` and ``labels`` then index), read batch by batch instead of copied out first.
    """
    reporter = reporter or NullReporter()
    # NHWC weights to match NHWC batches (see runtime.MEMORY_FORMAT); done outside inference mode, where
    # .to() would turn the weights into inference tensors that no later gradient (ODIN, training) may use
    model.to(memory_format=MEMORY_FORMAT)
    if rows is not None:
        rows = _row_index("rows", rows, len(images))
    if map_rows is not None:  # ascending, as FeatureSet.take expects
        map_rows = torch.unique(_row_index("map_rows", map_rows, len(images) if rows is None else len(rows)))
    # eval for the pass, each layer's own mode back after: a user's model still being trained stays in training
    with torch.inference_mode(), eval_mode(model):
        return _extract(model, images, device, batch_size, num_maps, labels, reporter, description, map_rows, rows)


def _row_index(name: str, rows: torch.Tensor, n: int) -> torch.Tensor:
    """``rows`` as int64 on the CPU, each one a row of ``n`` images; else a ValueError naming ``name``."""
    rows = rows.to(torch.long).cpu()
    if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= n):
        raise ValueError(f"{name} must index the {n} images, got rows {int(rows.min())}..{int(rows.max())}")
    return rows


def _extract(
    model: Classifier, images: torch.Tensor, device: torch.device, batch_size: int, num_maps: int,
    labels: torch.Tensor | None, reporter: Reporter, description: str, map_rows: torch.Tensor | None,
    rows: torch.Tensor | None,
) -> FeatureSet:
    # every output is preallocated once the first batch shows its shape, then filled in place: concatenating
    # per-batch pieces at the end would hold the maps twice at the peak, and long-lived pieces interleaved
    # with each batch's transient activations fragment the heap (measured: +0.5 GB RSS over 36,000 images)
    out_feats: torch.Tensor | None = None
    out_logits: torch.Tensor | None = None
    maps: list[torch.Tensor] = []
    kept = 0  # maps rows filled so far
    n = len(images) if rows is None else len(rows)
    n_maps = n if map_rows is None else len(map_rows)
    task = reporter.task(description, n)
    if device.type == "cpu":
        # CPU convolutions run as fast at 128 images as at 500, and the transient activations of one batch
        # are what sets the peak memory of evaluate (~0.7 GB at 500 for WRN/ResNet at 32x32; ~4x less here)
        batch_size = min(batch_size, CPU_BATCH)
    for start in range(0, n, batch_size):
        batch = images[start : start + batch_size] if rows is None else images[rows[start : start + batch_size]]
        x = normalize(batch.to(device, non_blocking=True))
        x = x.contiguous(memory_format=MEMORY_FORMAT)
        with autocast(device):
            out = model.forward_all(x)
        if out_feats is None or out_logits is None:
            out_feats = torch.empty((n, *out.features.shape[1:]), dtype=torch.float32)
            out_logits = torch.empty((n, *out.logits.shape[1:]), dtype=torch.float32)
        out_feats[start : start + len(x)].copy_(out.features)
        out_logits[start : start + len(x)].copy_(out.logits)
        if num_maps:
            sel = None if map_rows is None else _rows_in(map_rows, start, start + len(x)) - start
            for i, m in enumerate(out.maps[len(out.maps) - num_maps :]):
                if len(maps) <= i:
                    maps.append(torch.empty((n_maps, *m.shape[1:]), dtype=torch.float16))
                dst = maps[i][kept : kept + (len(x) if sel is None else len(sel))]
                if sel is None:
                    dst.copy_(m)
                elif m.device == dst.device:
                    # straight into place: a copy of the selected rows first would be one more
                    # allocation of a different size per batch
                    torch.index_select(m.to(torch.float16).contiguous(), 0, sel, out=dst)
                else:
                    dst.copy_(m[sel.to(m.device)])
            kept += len(x) if sel is None else len(sel)
        reporter.advance(task, len(x))
    reporter.done(task)
    if out_feats is None or out_logits is None:
        raise ValueError("no images to extract features from")
    return FeatureSet(out_feats, out_logits, maps if num_maps else None, labels, map_rows if num_maps else None)


def _rows(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``t[idx]``, as a view when ``idx`` is one ascending run (a scoring batch, the fit rows whose maps alone
    were kept): the maps are gigabytes, and copying them to read them once is what a view avoids."""
    n = len(idx)
    if n and int(idx[-1]) - int(idx[0]) == n - 1 and (n == 1 or bool((idx[1:] - idx[:-1] == 1).all())):
        return t[int(idx[0]) : int(idx[0]) + n]
    return t[idx]


def _rows_in(rows: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """The entries of ascending ``rows`` in ``[start, stop)``."""
    lo, hi = torch.searchsorted(rows, torch.tensor([start, stop])).tolist()
    return rows[lo:hi]

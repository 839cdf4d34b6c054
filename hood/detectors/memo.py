"""Scores remembered per (detector, feature content), so one evaluation scores each image once per detector.

Why: the combination ``heatmap+vim`` reads the same heatmap and the same ViM as the methods of those names.
With one shared instance per method (:meth:`DetectorContext.detector`) and this memo, an evaluation of all
three runs the decoder and ViM once per image instead of once per method that reads them.

Keyed by content, not identity: each combination takes its fit rows with :meth:`FeatureSet.take`, a new
object holding the same rows, and those must hit. The key hashes the features, logits and labels (the stage
maps come from the same images through the same classifier, so they add nothing but hashing time: at
``fw_layers`` 4 they are 30 times the features' size) and the map shapes; hashing costs milliseconds
against a decoder pass of seconds.

Valid while the detectors' states are fixed. ``evaluate`` fits every detector on the same ID-train features
before it scores anything, so a shared partner refitted by a second combination gets the state it had, and
it clears the memo between fitting and scoring anyway. Whoever refits a detector on other data must
:meth:`clear` the memo.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch

from hood.engine.features import FeatureSet

MAX_ENTRIES = 64  # score arrays are N float64 each: 64 of 10,000 rows is 5 MB


def content_key(feats: FeatureSet) -> str:
    """A hash of what identifies the rows of ``feats``: equal for two FeatureSets holding the same rows."""
    h = hashlib.blake2b(digest_size=16)
    parts = [feats.features, feats.logits] + ([feats.labels] if feats.labels is not None else [])
    for t in parts:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    h.update(repr([tuple(m.shape) for m in feats.maps or []]).encode())
    return h.hexdigest()


class ScoreMemo:
    """The last :data:`MAX_ENTRIES` score arrays, keyed by the detector (by identity) and the rows' content."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._scores: OrderedDict[tuple[int, str], tuple[object, np.ndarray]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def score(self, detector: object, feats: FeatureSet, compute: Callable[[FeatureSet], np.ndarray]) -> np.ndarray:
        """``compute(feats)``, or what it returned for the same detector and rows before."""
        key = (id(detector), content_key(feats))
        if key in self._scores:
            self._scores.move_to_end(key)
            self.hits += 1
            return self._scores[key][1]
        self.misses += 1
        scores = np.asarray(compute(feats), dtype=np.float64)
        scores.setflags(write=False)  # shared between callers: nobody may change another's scores
        # the detector is kept with its scores: its id cannot be reused by another object while the entry lives
        self._scores[key] = (detector, scores)
        while len(self._scores) > self.max_entries:
            self._scores.popitem(last=False)
        return scores

    def clear(self) -> None:
        self._scores.clear()

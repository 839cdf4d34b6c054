"""Detectors behind one interface; importing this package registers all of them.

``ORDER`` is the order of ``--methods all`` and of the table's columns: the paper's detector and its
combinations with post-hoc scores, then the output-space baselines, then the feature-space ones; detectors registered elsewhere come after.
"""

from hood.detectors import ash, combined, energy, fdbd, gen, heatmap, knn, mahalanobis, maxlogit, msp, odin, react, scale, vim  # noqa: F401  (registers)
from hood.detectors.base import DETECTORS, NEEDS_DECODER, Detector, DetectorContext, uses_decoder

ORDER = ("heatmap", "heatmap+vim", "heatmap+vim+scale", "msp", "energy", "maxlogit", "odin", "gen", "mahalanobis", "knn", "react", "vim", "ash", "scale", "fdbd")


def all_methods() -> list[str]:
    return [m for m in ORDER if m in DETECTORS] + [m for m in DETECTORS if m not in ORDER]


__all__ = ["DETECTORS", "NEEDS_DECODER", "ORDER", "Detector", "DetectorContext", "all_methods", "uses_decoder"]

"""Detectors behind one interface; importing this package registers all of them."""

from hood.detectors import heatmap  # noqa: F401  (registers)
from hood.detectors.base import DETECTORS, Detector, DetectorContext

__all__ = ["DETECTORS", "Detector", "DetectorContext"]

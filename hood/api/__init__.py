"""hood's Python API: heatmap OOD detection and the baselines for the model a user already has.

See ``docs/api.md``. Everything here is also exported from ``hood`` itself (``hood.HeatmapDetector``).
"""

from hood.api.detectors import (
    ASH,
    FDBD,
    GEN,
    KNN,
    MSP,
    ODIN,
    SCALE,
    Baseline,
    Energy,
    HeatmapDetector,
    HeatmapViM,
    HeatmapViMScale,
    Mahalanobis,
    MaxLogit,
    ReAct,
    ViM,
)
from hood.api.runs import LoadedRun, load_run
from hood.api.viz import overlay

__all__ = ["ASH", "FDBD", "GEN", "KNN", "MSP", "ODIN", "Baseline", "Energy", "HeatmapDetector", "HeatmapViM", "HeatmapViMScale", "LoadedRun", "Mahalanobis",
           "MaxLogit", "ReAct", "SCALE", "ViM", "load_run", "overlay"]

"""hood: heatmap-based out-of-distribution detection (Hornauer & Belagiannis, WACV 2023).

The Python API (``hood.HeatmapDetector``, ``hood.load_run``, the baselines; see ``docs/api.md``) is imported
on first use, so ``import hood`` and the command line start without loading torch.
"""

from __future__ import annotations

from typing import Any

from hood.version import __version__

_API = ("ASH", "FDBD", "GEN", "KNN", "MSP", "NAC", "NCI", "ODIN", "RMDS", "SCALE", "AdaSCALE", "Energy", "HeatmapDetector", "HeatmapViM", "HeatmapViMScale",
        "LoadedRun", "Mahalanobis", "MaxLogit", "ReAct", "ViM", "load_classifier", "load_images", "load_run", "overlay")
__all__ = ["__version__", "metrics", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        import hood.api

        return getattr(hood.api, name)
    if name == "metrics":
        import hood.metrics

        return hood.metrics
    raise AttributeError(f"module 'hood' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

"""Every detector, one class per file behind :class:`~hood.detectors.base.Detector`, and the registry of their
method names. Adding a detector is one new file and one line here; ``DETECTORS``' order is that of
``--methods all`` and of the table's columns (the paper's detector, the output-space baselines, then the
feature-space ones), with the combinations of the heatmap and post-hoc scores after the heatmap.
"""

from hood.detectors import (
    adascale,
    ash,
    energy,
    fdbd,
    gen,
    heatmap,
    knn,
    mahalanobis,
    maxlogit,
    msp,
    nac,
    nci,
    odin,
    react,
    rmds,
    scale,
    vim,
)
from hood.detectors.base import Detector
from hood.detectors.combined import COMBINATIONS, Combination

DETECTORS: dict[str, type[Detector]] = {d.name: d for d in (
    heatmap.HeatmapDetector,
    msp.MSP,
    energy.Energy,
    maxlogit.MaxLogit,
    odin.ODIN,
    gen.GEN,
    mahalanobis.Mahalanobis,
    knn.KNN,
    react.ReAct,
    vim.ViM,
    ash.ASH,
    scale.SCALE,
    fdbd.FDBD,
    nac.NAC,
    nci.NCI,
    rmds.RMDS,
    adascale.AdaSCALE,
)}


def all_methods() -> list[str]:
    """Every method ``hood evaluate`` knows, in table order: the heatmap, its combinations, the baselines."""
    return ["heatmap", *COMBINATIONS, *(m for m in DETECTORS if m != "heatmap")]


def parts_of(method: str) -> tuple[str, ...]:
    """The detectors whose scores ``method`` reads: its parts for a combination, else itself."""
    return COMBINATIONS[method].parts if method in COMBINATIONS else (method,)


def uses_decoder(methods: list[str]) -> bool:
    return any(DETECTORS[p].needs_decoder for m in methods for p in parts_of(m))


__all__ = ["COMBINATIONS", "DETECTORS", "Combination", "Detector", "all_methods", "parts_of", "uses_decoder"]

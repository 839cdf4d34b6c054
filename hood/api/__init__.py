"""hood's Python API: heatmap OOD detection and the baselines for the model a user already has.

The classes are the detectors ``hood evaluate`` runs (one per file in :mod:`hood.detectors`), so a score here is
the score the command line computes. See ``docs/api.md``. Everything here is also exported from ``hood`` itself
(``hood.HeatmapDetector``).
"""

from hood.api.classifiers import load_classifier, load_images
from hood.api.runs import LoadedRun, load_run
from hood.api.viz import overlay
from hood.detectors.adascale import AdaSCALE
from hood.detectors.ash import ASH
from hood.detectors.combined import HeatmapViM, HeatmapViMScale
from hood.detectors.energy import Energy
from hood.detectors.fdbd import FDBD
from hood.detectors.gen import GEN
from hood.detectors.heatmap import HeatmapDetector
from hood.detectors.knn import KNN
from hood.detectors.mahalanobis import Mahalanobis
from hood.detectors.maxlogit import MaxLogit
from hood.detectors.msp import MSP
from hood.detectors.nac import NAC
from hood.detectors.nci import NCI
from hood.detectors.odin import ODIN
from hood.detectors.react import ReAct
from hood.detectors.rmds import RMDS
from hood.detectors.scale import SCALE
from hood.detectors.vim import ViM

__all__ = ["ASH", "FDBD", "GEN", "KNN", "MSP", "NAC", "NCI", "ODIN", "RMDS", "SCALE", "AdaSCALE", "Energy", "HeatmapDetector", "HeatmapViM", "HeatmapViMScale",
           "LoadedRun", "Mahalanobis", "MaxLogit", "ReAct", "ViM", "load_classifier", "load_images", "load_run", "overlay"]

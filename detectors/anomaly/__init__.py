"""Streaming anomaly detectors (River shape: ``learn_one`` / ``score_one`` in [0, 1])."""

from detectors.anomaly.base import AnomalyDetector, Detector
from detectors.anomaly.ensemble import NoveltyEnsemble
from detectors.anomaly.ewma import EWMAScore
from detectors.anomaly.filters import QuantileFilter, ThresholdFilter
from detectors.anomaly.iforest import FlatForest, IsolationForestDetector
from detectors.anomaly.registry import DESCRIPTIONS, DETECTORS, make_detector
from detectors.anomaly.robust_z import RobustZScore
from detectors.anomaly.seasonal import SeasonalBaseline
from detectors.anomaly.type_forest import TypeForest

__all__ = [
    "DESCRIPTIONS",
    "DETECTORS",
    "AnomalyDetector",
    "Detector",
    "EWMAScore",
    "FlatForest",
    "IsolationForestDetector",
    "NoveltyEnsemble",
    "QuantileFilter",
    "RobustZScore",
    "SeasonalBaseline",
    "ThresholdFilter",
    "TypeForest",
    "make_detector",
]

"""Named anomaly detectors: what ``shouwang detect-csv --detector NAME`` can run."""

from __future__ import annotations

from collections.abc import Callable

from detectors.anomaly.base import Detector
from detectors.anomaly.ensemble import NoveltyEnsemble
from detectors.anomaly.ewma import EWMAScore
from detectors.anomaly.iforest import IsolationForestDetector
from detectors.anomaly.robust_z import RobustZScore
from detectors.anomaly.seasonal import SeasonalBaseline

__all__ = ["DESCRIPTIONS", "DETECTORS", "make_detector"]

DETECTORS: dict[str, Callable[[], Detector]] = {
    "default": NoveltyEnsemble,
    "robust_z": RobustZScore,
    "ewma": EWMAScore,
    "seasonal": SeasonalBaseline,
    "iforest": IsolationForestDetector,
}

DESCRIPTIONS: dict[str, str] = {
    "default": "best general-purpose detector: level, jump, drift, time of day and week, "
               "new range and volatility views, each scored against its own recent worst, "
               "nudged by how expected the value was after the one before",
    "robust_z": "distance from the rolling median in rolling MADs",
    "ewma": "distance from an exponentially weighted mean, in weighted standard deviations",
    "seasonal": "robust z against the same hour of the day",
    "iforest": "scikit-learn isolation forest on value, change and local context, refit "
               "on a sliding window",
}


def make_detector(name: str) -> Detector:
    """A fresh detector by registry name; ``KeyError`` names the choices."""
    try:
        factory = DETECTORS[name]
    except KeyError:
        raise KeyError(f"unknown detector {name!r}; choose from {sorted(DETECTORS)}") from None
    return factory()

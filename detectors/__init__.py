"""Detectors: readings in, hazard, health and anomaly findings (``Detection``) out."""

from detectors.correlation import Correlator
from detectors.engine import DetectorEngine
from detectors.events import EVENT_RULES, event_detection
from detectors.forecast import DeviceTrends, Trend, TrendBook, robust_trend
from detectors.health import HEALTH_HAZARDS, DeviceHealth, HealthBook
from detectors.learned import ANOMALY_SUFFIX, AnomalyBook
from detectors.models import EventRule
from detectors.offline import OFFLINE_HAZARD, Presence
from detectors.service import DetectorService
from detectors.snapshot import StateStore
from detectors.threshold import DeviceThresholds, Threshold, ThresholdBook

__all__ = [
    "ANOMALY_SUFFIX",
    "EVENT_RULES",
    "HEALTH_HAZARDS",
    "OFFLINE_HAZARD",
    "AnomalyBook",
    "Correlator",
    "DetectorEngine",
    "DetectorService",
    "DeviceHealth",
    "DeviceThresholds",
    "DeviceTrends",
    "EventRule",
    "HealthBook",
    "Presence",
    "StateStore",
    "Threshold",
    "ThresholdBook",
    "Trend",
    "TrendBook",
    "event_detection",
    "robust_trend",
]

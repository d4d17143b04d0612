"""Detectors: readings in, hazard, health and anomaly findings (``Detection``) out."""

from detectors.correlation import Correlator
from detectors.drift import DRIFT_SUFFIX, DriftWatch
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
from detectors.training import ModelKeeper, load_newest, train_models
from detectors.typed import MODEL_HAZARD, TypeModels

__all__ = [
    "ANOMALY_SUFFIX",
    "DRIFT_SUFFIX",
    "EVENT_RULES",
    "HEALTH_HAZARDS",
    "MODEL_HAZARD",
    "OFFLINE_HAZARD",
    "AnomalyBook",
    "Correlator",
    "DetectorEngine",
    "DetectorService",
    "DeviceHealth",
    "DeviceThresholds",
    "DeviceTrends",
    "DriftWatch",
    "EventRule",
    "HealthBook",
    "ModelKeeper",
    "Presence",
    "StateStore",
    "Threshold",
    "ThresholdBook",
    "Trend",
    "TrendBook",
    "TypeModels",
    "event_detection",
    "load_newest",
    "robust_trend",
    "train_models",
]

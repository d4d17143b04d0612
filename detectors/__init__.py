"""Detectors: readings in, hazard and health findings (``Detection``) out."""

from detectors.engine import DetectorEngine
from detectors.events import EVENT_RULES, event_detection
from detectors.models import EventRule
from detectors.offline import OFFLINE_HAZARD, Presence
from detectors.service import DetectorService
from detectors.threshold import DeviceThresholds, Threshold, ThresholdBook

__all__ = [
    "EVENT_RULES",
    "OFFLINE_HAZARD",
    "DetectorEngine",
    "DetectorService",
    "DeviceThresholds",
    "EventRule",
    "Presence",
    "Threshold",
    "ThresholdBook",
    "event_detection",
]

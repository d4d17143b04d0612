"""Discrete device events (SOS pressed, fall detected...): each one is its own finding.

An event has no level and no "back to normal": every press fires, and downstream
alerting folds repeats into the live alert for that hazard and place.

Severities, and why:

- ``sos`` RED: a person asked for help on purpose; nothing is more certain or urgent.
- ``fall`` ORANGE: urgent (an elderly resident may be on the floor alone), but a wrist
  accelerometer's fall detection has false positives, so it ranks below a deliberate SOS
  (a wearer who needs help can still press SOS, a separate RED hazard).
- ``siren`` ORANGE: a local sounder was triggered (by hand or a panel); the cause is not
  known yet, so it ranks with a first-level sensor alarm.
- ``tamper`` YELLOW, kind HEALTH: the device was opened or moved; coverage may be lost,
  which is a maintenance job, not a danger to people by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from detectors.models import EventRule
from shouwang.models import Detection, DetectionKind, Reading, Severity

__all__ = ["EVENT_RULES", "event_detection"]

EVENT_RULES: Mapping[str, EventRule] = MappingProxyType({
    "sos": EventRule(hazard="sos", kind=DetectionKind.HAZARD, severity=Severity.RED,
                     message="紧急呼叫：佩戴者按下了 SOS 键"),
    "fall": EventRule(hazard="fall", kind=DetectionKind.HAZARD, severity=Severity.ORANGE,
                      message="跌倒报警：检测到佩戴者可能跌倒"),
    "siren": EventRule(hazard="siren", kind=DetectionKind.HAZARD, severity=Severity.ORANGE,
                       message="声光报警器已启动"),
    "tamper": EventRule(hazard="tamper", kind=DetectionKind.HEALTH, severity=Severity.YELLOW,
                        message="设备被拆动或遮挡"),
})


def event_detection(reading: Reading, now: float) -> Detection | None:
    """The finding for one event reading, or None for an event we attach no meaning to.

    >>> r = Reading(ts=10.0, device_id="w1", site="s1", metric="sos", value=1.0)
    >>> d = event_detection(r, now=11.0)
    >>> (d.hazard, d.severity.name, d.firing, d.message)
    ('sos', 'RED', True, '紧急呼叫：佩戴者按下了 SOS 键')
    """
    rule = EVENT_RULES.get(reading.metric)
    if rule is None:
        return None
    return Detection(
        ts=now, device_id=reading.device_id, site=reading.site, hazard=rule.hazard,
        kind=rule.kind, severity=rule.severity, firing=True, metric=reading.metric,
        value=reading.value, message=rule.message, reading_ts=reading.ts, drill=reading.drill,
    )

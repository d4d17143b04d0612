"""What a community loudspeaker controller receives: the spoken text, and how urgently and
where to play it.

One JSON object per message, the same over MQTT (apprise ``mqtt://``, the payload is the
object itself) and HTTP (apprise ``json://``, the object is the ``message`` field):

    {"type": "shouwang.broadcast", "version": 1, "alert_id": 12, "alert_ids": [12],
     "text": "紧急通知：…", "priority": 4, "priority_name": "emergency",
     "severity": "red", "hazards": ["gas"],
     "zone": {"scope": "building", "site": "sunshine", "building": "3"},
     "drill": false, "language": "zh",
     "audio": {"url": "…/broadcast/audio/….wav", "file": "….wav", "format": "wav",
               "duration_s": 9.4}}

``priority`` follows the four colours, higher is more urgent (red 4 … blue 1); a drill
is 0, the lowest, so a controller never lets a drill talk over a real warning.
``zone`` is the alert's building, or the whole site (``building`` null) for hazards that
concern everyone (``alerting.broadcast.site_wide_hazards``) or an alert with no building.
``audio`` is there when a local TTS engine rendered the text (added when sent); ``file``
is the clip's name, which the console serves at ``/broadcast/audio/{file}`` from the
database (``url`` when ``audio_url_base`` is set).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson

from alerting.models import Language
from shouwang.models import Alert, Severity

__all__ = ["PRIORITY_NAMES", "BroadcastMessage", "Zone", "broadcast_message", "priority_of",
           "spoken_part", "with_audio"]

_TYPE = "shouwang.broadcast"
_VERSION = 1
DRILL_PRIORITY = 0
PRIORITY_NAMES: Mapping[int, str] = {4: "emergency", 3: "urgent", 2: "warning", 1: "notice",
                                     DRILL_PRIORITY: "drill"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Zone:
    site: str
    building: str | None  # None: the whole site


@dataclass(frozen=True, slots=True, kw_only=True)
class BroadcastMessage:
    alert_ids: tuple[int, ...]  # one alert, or every alert a storm summary covers
    text: str
    priority: int
    severity: Severity
    hazards: tuple[str, ...]
    zone: Zone
    drill: bool
    language: Language

    def encode(self) -> str:
        return orjson.dumps({
            "type": _TYPE, "version": _VERSION,
            "alert_id": self.alert_ids[0], "alert_ids": list(self.alert_ids),
            "text": self.text, "priority": self.priority,
            "priority_name": PRIORITY_NAMES[self.priority],
            "severity": self.severity.label, "hazards": list(self.hazards),
            "zone": {"scope": "site" if self.zone.building is None else "building",
                     "site": self.zone.site, "building": self.zone.building},
            "drill": self.drill, "language": self.language,
        }).decode()


def priority_of(severity: Severity, drill: bool) -> int:
    """
    >>> priority_of(Severity.RED, False), priority_of(Severity.BLUE, False), \
priority_of(Severity.RED, True)
    (4, 1, 0)
    """
    return DRILL_PRIORITY if drill else int(severity)


def _zone(alerts: Sequence[Alert], site_wide_hazards: Sequence[str]) -> Zone:
    buildings = {a.location.building for a in alerts}
    one_building = len(buildings) == 1 and "" not in buildings
    site_wide = any(a.hazard in site_wide_hazards for a in alerts)
    return Zone(site=alerts[0].site,
                building=buildings.pop() if one_building and not site_wide else None)


def broadcast_message(alerts: Sequence[Alert], text: str, language: Language, *,
                      site_wide_hazards: Sequence[str]) -> BroadcastMessage:
    """The message for ``alerts`` (one, or a storm's): the worst severity sets the priority;
    a mix of drills and real alerts is not a drill."""
    severity = max(a.severity for a in alerts)
    drill = all(a.drill for a in alerts)
    return BroadcastMessage(
        alert_ids=tuple(a.id for a in alerts), text=text,
        priority=priority_of(severity, drill), severity=severity,
        hazards=tuple(dict.fromkeys(a.hazard for a in alerts)),
        zone=_zone(alerts, site_wide_hazards), drill=drill, language=language)


def spoken_part(body: str) -> tuple[str, Language] | None:
    """The text and language of a broadcast body; None for a body in an older, plain form."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(payload, dict) or payload.get("type") != _TYPE:
        return None
    language: Language = "en" if payload.get("language") == "en" else "zh"
    return str(payload.get("text", "")), language


def with_audio(body: str, audio: Mapping[str, object]) -> str:
    """``body`` with the rendered audio's description added."""
    payload = orjson.loads(body)
    payload["audio"] = dict(audio)
    return orjson.dumps(payload).decode()

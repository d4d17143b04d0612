"""The domain model shared by every service: frozen dataclasses, no behaviour beyond naming.

Untrusted data (MQTT payloads, HTTP bodies, config files) is parsed by pydantic at the
edge and converted to these types at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from shouwang.catalog import DeviceType

__all__ = [
    "Alert",
    "AlertStatus",
    "Detection",
    "DetectionKind",
    "Device",
    "Location",
    "Notification",
    "NotificationStatus",
    "Reading",
    "ReadingKind",
    "Reject",
    "Severity",
    "Site",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    building: str = ""
    unit: str = ""
    floor: str = ""
    room: str = ""
    lat: float | None = None
    lon: float | None = None

    def describe(self) -> str:
        """Human address inside a site, e.g. ``3号楼 2单元 5层 502``.

        >>> Location(building="3号楼", unit="2单元", floor="5", room="502").describe()
        '3号楼 2单元 5层 502'
        """
        floor = f"{self.floor}层" if self.floor and not self.floor.endswith("层") else self.floor
        return " ".join(part for part in (self.building, self.unit, floor, self.room) if part)


@dataclass(frozen=True, slots=True, kw_only=True)
class Site:
    id: str
    name: str
    address: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    id: str
    type: DeviceType
    site: str
    name: str = ""
    location: Location = field(default_factory=Location)
    report_interval_s: float = 60.0
    # metric -> (level 1, level 2) overrides of the type defaults.
    thresholds: Mapping[str, tuple[float, float]] = field(default_factory=dict)


class ReadingKind(StrEnum):
    TELEMETRY = "telemetry"
    EVENT = "event"    # a discrete event (fall, sos): metric is the event name, value 1.0
    STATUS = "status"  # metric "online", value 1.0 online / 0.0 offline


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    ts: float            # device time, epoch seconds (broker receive time when absent)
    device_id: str
    site: str
    metric: str
    value: float
    seq: int | None = None
    kind: ReadingKind = ReadingKind.TELEMETRY
    received_at: float = 0.0  # ingest receive time, epoch seconds
    drill: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    received_at: float
    topic: str
    reason: str
    payload: bytes
    device_id: str | None = None
    detail: str = ""


class Severity(IntEnum):
    """China's four-colour warning levels (蓝/黄/橙/红); higher is worse."""

    BLUE = 1
    YELLOW = 2
    ORANGE = 3
    RED = 4

    @property
    def label(self) -> str:
        return self.name.lower()


class DetectionKind(StrEnum):
    HAZARD = "hazard"    # a danger to people: goes to responders
    HEALTH = "health"    # a device problem: goes to maintenance
    ANOMALY = "anomaly"  # learned, unexplained deviation


@dataclass(frozen=True, slots=True, kw_only=True)
class Detection:
    ts: float
    device_id: str
    site: str
    hazard: str          # e.g. "gas", "smoke", "offline", "sos"
    kind: DetectionKind
    severity: Severity
    firing: bool         # False clears the hazard (value back under hysteresis)
    metric: str = ""
    value: float | None = None
    level: int = 0
    message: str = ""
    reading_ts: float = 0.0  # ts of the reading that caused it, for latency accounting
    drill: bool = False


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    ESCALATED = "escalated"
    SUPPRESSED = "suppressed"
    RESOLVED = "resolved"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    id: int
    site: str
    device_id: str
    hazard: str
    kind: DetectionKind
    severity: Severity
    status: AlertStatus
    opened_at: float
    location: Location = field(default_factory=Location)
    acknowledged_at: float | None = None
    resolved_at: float | None = None
    last_value: float | None = None
    message: str = ""
    drill: bool = False


class NotificationStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # gave up after the last attempt
    HELD = "held"  # an alarm storm holds it until the receiver's window ends
    SUMMARISED = "summarised"  # a storm summary (another row) told of its alert
    WITHDRAWN = "withdrawn"  # not sent: its alert was answered while held (last_error says how)


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    id: int
    alert_id: int
    receiver: str
    channel: str
    body: str
    status: NotificationStatus
    attempts: int = 0
    last_error: str = ""
    created_at: float = 0.0
    sent_at: float | None = None

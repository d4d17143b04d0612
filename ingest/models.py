"""What ingest accepts at the edge (pydantic) and what it hands on (dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from shouwang.models import Reading, Reject

__all__ = [
    "DecodeResult",
    "EventPayload",
    "RawMessage",
    "RejectReason",
    "TelemetryPayload",
]


class RejectReason(StrEnum):
    """Stable reason codes: counted as metric labels and stored in the rejects table."""

    BAD_TOPIC = "bad_topic"
    UNKNOWN_DEVICE = "unknown_device"
    SITE_MISMATCH = "site_mismatch"
    OVERSIZED = "oversized"
    MALFORMED_JSON = "malformed_json"
    NON_FINITE = "non_finite"
    WRONG_TYPE = "wrong_type"
    BAD_TIMESTAMP = "bad_timestamp"
    TOO_MANY_READINGS = "too_many_readings"
    UNKNOWN_EVENT = "unknown_event"
    BAD_STATUS = "bad_status"
    STALE = "stale"                # older than ingest.stale_after_s on arrival: a replay
    RATE_LIMITED = "rate_limited"  # over the device's message limit (sampled rows)
    QUARANTINED = "quarantined"    # the device is quarantined for flooding (sampled rows)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore", frozen=True)


class TelemetryPayload(_Strict):
    ts: StrictFloat | StrictInt | StrictStr | None = None
    seq: StrictInt | None = Field(default=None, ge=0, lt=2**63)
    values: dict[StrictStr, StrictFloat | StrictInt] = Field(min_length=1)
    drill: StrictBool = False


class EventPayload(_Strict):
    ts: StrictFloat | StrictInt | StrictStr | None = None
    seq: StrictInt | None = Field(default=None, ge=0, lt=2**63)
    event: StrictStr
    values: dict[StrictStr, StrictFloat | StrictInt] = Field(default_factory=dict)
    drill: StrictBool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RawMessage:
    """One MQTT message as received; ``mid`` is what gets acknowledged later."""

    topic: str
    payload: bytes
    received_at: float
    mid: int = 0
    qos: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodeResult:
    readings: tuple[Reading, ...] = ()
    reject: Reject | None = None

"""Bus message values: how domain objects travel as bytes on every bus topic.

One compact JSON shape per topic, versioned with ``"v"`` so a consumer can refuse a
format it does not know instead of misreading it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from shouwang.models import (
    Alert,
    AlertStatus,
    Detection,
    DetectionKind,
    Location,
    Reading,
    ReadingKind,
    Reject,
    Severity,
)

__all__ = [
    "CodecError",
    "decode_alert",
    "decode_detection",
    "decode_readings",
    "decode_reject",
    "encode_alert",
    "encode_detection",
    "encode_readings",
    "encode_reject",
]

_VERSION = 1
_KINDS = {k.value: k for k in ReadingKind}


class CodecError(ValueError):
    """A bus value that this version cannot decode."""


def _load(value: bytes) -> dict[str, Any]:  # Any: JSON object fields are checked per topic
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as err:
        raise CodecError(f"not JSON: {err}") from err
    if not isinstance(obj, dict) or obj.get("v") != _VERSION:
        raise CodecError("unknown bus message version")
    return obj


def encode_readings(readings: Sequence[Reading]) -> bytes:
    """One device's readings (the ``readings`` topic value, key = device id).

    >>> r = Reading(ts=1.5, device_id="g1", site="s", metric="lel", value=3.0, seq=7)
    >>> drill = Reading(ts=2.5, device_id="g1", site="s", metric="lel", value=9.0, drill=True)
    >>> decode_readings(encode_readings([r, drill])) == [r, drill]
    True
    """
    first = readings[0]
    return orjson.dumps({
        "v": _VERSION,
        "d": first.device_id,
        "s": first.site,
        # orjson writes an enum member as its value, faster than reading .value here.
        "r": [[r.ts, r.metric, r.value, r.seq, r.kind, r.received_at, r.drill]
              for r in readings],
    })


def decode_readings(value: bytes) -> list[Reading]:
    obj = _load(value)
    try:
        device_id, site = obj["d"], obj["s"]
        return [
            Reading(ts=float(ts), device_id=device_id, site=site, metric=str(metric),
                    value=float(val), seq=seq, kind=_KINDS[kind], received_at=float(received_at),
                    drill=bool(drill))
            for ts, metric, val, seq, kind, received_at, drill in obj["r"]
        ]
    except (KeyError, TypeError, ValueError) as err:
        raise CodecError(f"bad readings message: {err!r}") from err


def encode_detection(d: Detection) -> bytes:
    return orjson.dumps({
        "v": _VERSION, "ts": d.ts, "device_id": d.device_id, "site": d.site, "hazard": d.hazard,
        "kind": d.kind.value, "severity": int(d.severity), "firing": d.firing, "metric": d.metric,
        "value": d.value, "level": d.level, "message": d.message, "reading_ts": d.reading_ts,
        "drill": d.drill,
    })


def decode_detection(value: bytes) -> Detection:
    """
    >>> d = Detection(ts=2.0, device_id="g1", site="s", hazard="gas", kind=DetectionKind.HAZARD,
    ...               severity=Severity.RED, firing=True, metric="lel", value=55.0, level=2)
    >>> decode_detection(encode_detection(d)) == d
    True
    """
    o = _load(value)
    try:
        return Detection(
            ts=o["ts"], device_id=o["device_id"], site=o["site"], hazard=o["hazard"],
            kind=DetectionKind(o["kind"]), severity=Severity(o["severity"]), firing=o["firing"],
            metric=o["metric"], value=o["value"], level=o["level"], message=o["message"],
            reading_ts=o["reading_ts"], drill=o["drill"],
        )
    except (KeyError, TypeError, ValueError) as err:
        raise CodecError(f"bad detection message: {err!r}") from err


def encode_reject(r: Reject) -> bytes:
    return orjson.dumps({
        "v": _VERSION, "received_at": r.received_at, "topic": r.topic, "reason": r.reason,
        # Raw bytes may be any encoding; latin-1 round-trips every byte.
        "payload": r.payload.decode("latin-1"), "device_id": r.device_id, "detail": r.detail,
    })


def decode_reject(value: bytes) -> Reject:
    o = _load(value)
    try:
        return Reject(received_at=o["received_at"], topic=o["topic"], reason=o["reason"],
                      payload=o["payload"].encode("latin-1"), device_id=o["device_id"],
                      detail=o["detail"])
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CodecError(f"bad reject message: {err!r}") from err


def encode_alert(a: Alert) -> bytes:
    loc = a.location
    return orjson.dumps({
        "v": _VERSION, "id": a.id, "site": a.site, "device_id": a.device_id, "hazard": a.hazard,
        "kind": a.kind.value, "severity": int(a.severity), "status": a.status.value,
        "opened_at": a.opened_at, "acknowledged_at": a.acknowledged_at,
        "resolved_at": a.resolved_at, "last_value": a.last_value, "message": a.message,
        "drill": a.drill,
        "location": {"building": loc.building, "unit": loc.unit, "floor": loc.floor,
                     "room": loc.room, "lat": loc.lat, "lon": loc.lon},
    })


def decode_alert(value: bytes) -> Alert:
    o = _load(value)
    try:
        return Alert(
            id=o["id"], site=o["site"], device_id=o["device_id"], hazard=o["hazard"],
            kind=DetectionKind(o["kind"]), severity=Severity(o["severity"]),
            status=AlertStatus(o["status"]), opened_at=o["opened_at"],
            acknowledged_at=o["acknowledged_at"], resolved_at=o["resolved_at"],
            last_value=o["last_value"], message=o["message"], drill=o["drill"],
            location=Location(**o["location"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise CodecError(f"bad alert message: {err!r}") from err

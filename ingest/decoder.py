"""Turns one MQTT message into readings, or into a reject with a reason. Never raises.

Checked once, here: the topic names a registered device on its own site, the payload
is JSON of the contract's shape, every number is finite, timestamps are real instants.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from ingest.models import DecodeResult, EventPayload, RawMessage, RejectReason, TelemetryPayload
from shouwang.catalog import EVENTS
from shouwang.models import Device, Reading, ReadingKind, Reject

__all__ = ["Decoder"]

_MS_THRESHOLD = 1e11  # epoch seconds reach 1e11 in the year 5138; larger means milliseconds
_MIN_TS = 946684800.0  # 2000-01-01: anything earlier is a device with an unset clock


class _Rejected(Exception):
    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _reject_nonfinite(token: str) -> float:
    raise _Rejected(RejectReason.NON_FINITE, f"{token} is not a finite number")


def _parse_json(payload: bytes) -> Any:  # Any: arbitrary JSON before validation
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as err:
        # orjson refuses NaN/Infinity outright; tell those apart from broken JSON.
        try:
            json.loads(payload, parse_constant=_reject_nonfinite)
        except _Rejected:
            raise
        except (ValueError, UnicodeDecodeError, RecursionError):
            pass  # deeper nesting than the stdlib parser allows is malformed too
        if "infinity" in str(err):
            raise _Rejected(RejectReason.NON_FINITE, str(err)) from err
        raise _Rejected(RejectReason.MALFORMED_JSON, str(err)) from err


def _validation_reject(err: ValidationError) -> _Rejected:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    reason = (RejectReason.NON_FINITE if first["type"] == "finite_number"
              else RejectReason.WRONG_TYPE)
    return _Rejected(reason, f"{where}: {first['msg']}")


def _timestamp(value: float | int | str | None, received_at: float) -> float:
    if value is None:
        return received_at
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as err:
            raise _Rejected(RejectReason.BAD_TIMESTAMP, f"ts {value[:40]!r} is not ISO 8601") \
                from err
        if parsed.tzinfo is None:
            raise _Rejected(RejectReason.BAD_TIMESTAMP, "ISO 8601 ts needs a zone (Z or ±hh:mm)")
        ts = parsed.timestamp()
    else:
        ts = float(value)
        if ts >= _MS_THRESHOLD:
            ts /= 1000.0
    if not math.isfinite(ts) or ts < _MIN_TS or ts > received_at + 366 * 86400:
        raise _Rejected(RejectReason.BAD_TIMESTAMP, f"ts {value!r} is not a plausible instant")
    return ts


_FAST_KEYS = frozenset({"ts", "seq", "values", "drill"})
# A telemetry item's (ts, seq, values, drill), however it was validated.
_Telemetry = tuple[float | int | str | None, int | None, dict[str, float | int], bool]


def _plain_number(value: object) -> bool:
    # Exactly what StrictFloat | StrictInt admits from JSON: bool is an int subclass but
    # strict mode refuses it; orjson never yields NaN or infinity.
    return type(value) is float or type(value) is int


def _fast_telemetry(item: object) -> _Telemetry | None:
    """The common telemetry item, checked without pydantic; None means "let pydantic decide".

    Accepts only items that ``TelemetryPayload`` accepts too, with the same field values,
    so the result is identical; anything unusual (ISO timestamps, wrong types, missing
    values) takes the pydantic path and gets its error message.
    """
    if type(item) is not dict or not item.keys() <= _FAST_KEYS:
        return None
    ts = item.get("ts")
    seq = item.get("seq")
    values = item.get("values")
    drill = item.get("drill", False)
    if ts is not None and not _plain_number(ts):
        return None
    if seq is not None and not (type(seq) is int and 0 <= seq < 2**63):
        return None
    if type(drill) is not bool or type(values) is not dict or not values:
        return None
    for value in values.values():
        if not _plain_number(value):
            return None
    return ts, seq, values, drill


def _validated_telemetry(item: object) -> _Telemetry:
    try:
        payload = TelemetryPayload.model_validate(item)
    except ValidationError as err:
        raise _validation_reject(err) from err
    return payload.ts, payload.seq, payload.values, payload.drill


class Decoder:
    """Decodes messages for one topic root against the device registry."""

    def __init__(self, devices: Mapping[str, Device], *, topic_root: str = "shouwang/v1",
                 max_payload_bytes: int = 64 * 1024, max_readings: int = 500,
                 stale_after_s: float | None = None) -> None:
        self._devices = devices
        self._prefix = topic_root.rstrip("/") + "/"
        self._max_payload = max_payload_bytes
        self._max_readings = max_readings
        self._stale_after = stale_after_s

    def decode(self, message: RawMessage) -> DecodeResult:
        try:
            return DecodeResult(readings=self._decode(message))
        except _Rejected as rejected:
            return DecodeResult(reject=Reject(
                received_at=message.received_at, topic=message.topic[:512],
                reason=rejected.reason.value, detail=rejected.detail[:500],
                payload=message.payload[: self._max_payload], device_id=self._device_of(message)))

    def _device_of(self, message: RawMessage) -> str | None:
        parts = message.topic.split("/")
        return parts[-2][:64] if len(parts) >= 2 else None

    def _decode(self, message: RawMessage) -> tuple[Reading, ...]:
        device, channel = self._route(message.topic)
        if len(message.payload) > self._max_payload:
            raise _Rejected(RejectReason.OVERSIZED,
                            f"{len(message.payload)} bytes > limit {self._max_payload}")
        if channel == "status":
            return (self._status(device, message),)
        obj = _parse_json(message.payload)
        if channel == "event":
            return self._event(device, obj, message)
        items = obj if isinstance(obj, list) else [obj]
        if not items:
            raise _Rejected(RejectReason.WRONG_TYPE, "empty list")
        readings: list[Reading] = []
        received_at = message.received_at
        for item in items:
            checked = _fast_telemetry(item) or _validated_telemetry(item)
            raw_ts, seq, values, drill = checked
            ts = _timestamp(raw_ts, received_at)
            if self._stale_after is not None and ts < received_at - self._stale_after:
                raise self._stale(ts, received_at)
            for metric, value in values.items():
                readings.append(Reading(
                    ts=ts, device_id=device.id, site=device.site, metric=metric,
                    value=float(value), seq=seq, received_at=received_at, drill=drill))
            if len(readings) > self._max_readings:
                raise _Rejected(RejectReason.TOO_MANY_READINGS,
                                f"more than {self._max_readings} readings in one message")
        return tuple(readings)

    def _stale(self, ts: float, received_at: float) -> _Rejected:
        # An old capture played again: storing it is harmless (the store dedupes), but an
        # old "all clear" or alarm must not reach the detectors as news.
        return _Rejected(RejectReason.STALE, f"ts is {received_at - ts:.0f} s old, more "
                         f"than the {self._stale_after:g} s horizon")

    def _route(self, topic: str) -> tuple[Device, str]:
        if not topic.startswith(self._prefix):
            raise _Rejected(RejectReason.BAD_TOPIC, f"topic is not under {self._prefix}")
        parts = topic[len(self._prefix):].split("/")
        if len(parts) != 3 or parts[2] not in ("telemetry", "event", "status"):
            raise _Rejected(RejectReason.BAD_TOPIC,
                            "expected {site}/{device_id}/telemetry|event|status")
        site, device_id, channel = parts
        device = self._devices.get(device_id)
        if device is None:
            raise _Rejected(RejectReason.UNKNOWN_DEVICE, f"device {device_id[:64]!r} is not "
                            "registered")
        if device.site != site:
            raise _Rejected(RejectReason.SITE_MISMATCH, f"device {device_id!r} belongs to site "
                            f"{device.site!r}, not {site[:64]!r}")
        return device, channel

    def _event(self, device: Device, obj: Any,  # Any: JSON before validation
               message: RawMessage) -> tuple[Reading, ...]:
        try:
            payload = EventPayload.model_validate(obj)
        except ValidationError as err:
            raise _validation_reject(err) from err
        if payload.event not in EVENTS:
            raise _Rejected(RejectReason.UNKNOWN_EVENT, f"event {payload.event[:40]!r} is not "
                            f"one of {sorted(EVENTS)}")
        ts = _timestamp(payload.ts, message.received_at)
        if self._stale_after is not None and ts < message.received_at - self._stale_after:
            raise self._stale(ts, message.received_at)
        event = Reading(ts=ts, device_id=device.id, site=device.site, metric=payload.event,
                        value=1.0, seq=payload.seq, kind=ReadingKind.EVENT,
                        received_at=message.received_at, drill=payload.drill)
        extra = tuple(replace(event, metric=k, value=float(v), kind=ReadingKind.TELEMETRY)
                      for k, v in payload.values.items())
        return (event, *extra)

    def _status(self, device: Device, message: RawMessage) -> Reading:
        text = message.payload.strip().lower()
        if text.startswith(b"{"):
            obj = _parse_json(message.payload)
            text = str(obj.get("status", "")).encode().lower() if isinstance(obj, dict) else b""
        if text not in (b"online", b"offline"):
            raise _Rejected(RejectReason.BAD_STATUS, "status must be 'online' or 'offline'")
        return Reading(ts=message.received_at, device_id=device.id, site=device.site,
                       metric="online", value=1.0 if text == b"online" else 0.0,
                       kind=ReadingKind.STATUS, received_at=message.received_at)

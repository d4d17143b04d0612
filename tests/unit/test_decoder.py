"""The payload decoder: the DESIGN contract in, readings or a reason out, never an exception."""

from __future__ import annotations

import orjson
import pytest

from ingest.decoder import Decoder
from ingest.models import RawMessage
from shouwang.catalog import DeviceType
from shouwang.models import Device, ReadingKind

NOW = 1795660800.0  # 2026-11-26T00:00:00Z
DECODER = Decoder({"g1": Device(id="g1", type=DeviceType.GAS, site="s1")},
                  max_payload_bytes=2048, max_readings=10)


def decode(payload: bytes, topic: str = "shouwang/v1/s1/g1/telemetry"):  # type: ignore[no-untyped-def]
    return DECODER.decode(RawMessage(topic=topic, payload=payload, received_at=NOW))


@pytest.mark.parametrize(("ts", "expected"), [
    (1764120000.123, 1764120000.123),
    (1764120000123, 1764120000.123),
    ("2025-11-26T01:20:00.123Z", 1764120000.123),
    ("2025-11-26T09:20:00.123+08:00", 1764120000.123),
])
def test_timestamps_in_every_contract_form(ts: object, expected: float) -> None:
    result = decode(orjson.dumps({"ts": ts, "values": {"lel": 3}}))
    assert result.reject is None
    assert result.readings[0].ts == pytest.approx(expected)


def test_missing_ts_takes_the_receive_time_and_seq_is_kept() -> None:
    result = decode(b'{"seq": 41, "values": {"lel": 12.5, "battery": 87}}')
    assert [(r.metric, r.value, r.ts, r.seq) for r in result.readings] == [
        ("lel", 12.5, NOW, 41), ("battery", 87.0, NOW, 41)]


def test_a_list_of_objects_is_many_readings() -> None:
    result = decode(b'[{"ts": 1764120000, "values": {"lel": 1}}, '
                    b'{"ts": 1764120001, "values": {"lel": 2, "co": 3}}]')
    assert [r.value for r in result.readings] == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    ("shouwang/v1/s1/g1/telemetry/x", b"{}", "bad_topic"),
    ("other/v1/s1/g1/telemetry", b"{}", "bad_topic"),
    ("shouwang/v1/s1/nope/telemetry", b'{"values": {"lel": 1}}', "unknown_device"),
    ("shouwang/v1/s2/g1/telemetry", b'{"values": {"lel": 1}}', "site_mismatch"),
    ("shouwang/v1/s1/g1/telemetry", b'{"values": ', "malformed_json"),
    ("shouwang/v1/s1/g1/telemetry", b"\xff\xfe", "malformed_json"),
    ("shouwang/v1/s1/g1/telemetry", b'{"values": {"lel": Infinity}}', "non_finite"),
    ("shouwang/v1/s1/g1/telemetry", b'{"values": {"lel": -1e400}}', "non_finite"),
    ("shouwang/v1/s1/g1/telemetry", b'{"values": {"lel": [1]}}', "wrong_type"),
    ("shouwang/v1/s1/g1/telemetry", b'{"values": {}}', "wrong_type"),
    ("shouwang/v1/s1/g1/telemetry", b'{"seq": -1, "values": {"lel": 1}}', "wrong_type"),
    ("shouwang/v1/s1/g1/telemetry", b"[]", "wrong_type"),
    ("shouwang/v1/s1/g1/telemetry", b'"text"', "wrong_type"),
    ("shouwang/v1/s1/g1/telemetry", b'{"ts": 12, "values": {"lel": 1}}', "bad_timestamp"),
    ("shouwang/v1/s1/g1/telemetry", b'{"ts": "2026-11-26T00:00:00", "values": {"lel": 1}}',
     "bad_timestamp"),
    ("shouwang/v1/s1/g1/telemetry", b'{"values": {"lel": 1}, "x": "' + b"a" * 3000 + b'"}',
     "oversized"),
    ("shouwang/v1/s1/g1/telemetry",
     orjson.dumps([{"values": {"lel": 1, "co": 2}}] * 6), "too_many_readings"),
    ("shouwang/v1/s1/g1/event", b'{"event": "party"}', "unknown_event"),
    ("shouwang/v1/s1/g1/status", b"maybe", "bad_status"),
])
def test_bad_input_gets_a_reason(topic: str, payload: bytes, reason: str) -> None:
    result = decode(payload, topic)
    assert result.readings == ()
    assert result.reject is not None
    assert result.reject.reason == reason
    assert result.reject.detail
    assert result.reject.payload == payload[:2048]


def test_events_and_status_become_readings_of_their_kind() -> None:
    sos = decode(b'{"ts": 1764120000, "seq": 9, "event": "sos", "values": {"battery": 50}}',
                 "shouwang/v1/s1/g1/event")
    assert [(r.kind, r.metric, r.value) for r in sos.readings] == [
        (ReadingKind.EVENT, "sos", 1.0), (ReadingKind.TELEMETRY, "battery", 50.0)]
    offline = decode(b"offline", "shouwang/v1/s1/g1/status")
    assert [(r.kind, r.metric, r.value) for r in offline.readings] == [
        (ReadingKind.STATUS, "online", 0.0)]
    online = decode(b'{"status": "online"}', "shouwang/v1/s1/g1/status")
    assert online.readings[0].value == 1.0


def test_drill_flag_travels_with_the_readings() -> None:
    result = decode(b'{"drill": true, "values": {"lel": 30}}')
    assert result.readings[0].drill is True

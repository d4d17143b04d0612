"""Hostile input for the MQTT edge: the decoder and its topic parser never raise.

Every example must come back as readings that are safe to store (finite, plausible, the
topic's own device and site) or as a reject with a stable reason code. The runs are
derandomised with a fixed ``max_examples`` so CI stays deterministic and cheap; see how
many inputs were tried with ``pytest tests/fuzz --hypothesis-show-statistics``.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.decoder import Decoder
from ingest.models import DecodeResult, RawMessage, RejectReason
from shouwang.catalog import EVENTS, DeviceType
from shouwang.models import Device, ReadingKind

NOW = 1795660800.0  # 2026-11-26T00:00:00Z
MIN_TS = 946684800.0  # the decoder's floor: 2000-01-01
MAX_PAYLOAD = 64 * 1024
REASONS = frozenset(reason.value for reason in RejectReason)
DEVICES = {
    "g1": Device(id="g1", type=DeviceType.GAS, site="s1"),
    "w1": Device(id="w1", type=DeviceType.WEARABLE, site="s1"),
    "设备-7": Device(id="设备-7", type=DeviceType.SMOKE, site="小区a"),
}
DECODER = Decoder(DEVICES, max_payload_bytes=MAX_PAYLOAD, max_readings=500)
CHANNELS = ("telemetry", "event", "status")

FUZZ = settings(max_examples=500, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _decode(topic: str, payload: bytes) -> DecodeResult:
    result = DECODER.decode(RawMessage(topic=topic, payload=payload, received_at=NOW))
    _check(result, topic)
    return result


def _check(result: DecodeResult, topic: str) -> None:
    """Either readings that are safe to store, or a reject with a known reason; never both."""
    assert isinstance(result, DecodeResult)
    if result.reject is not None:
        assert result.readings == ()
        assert result.reject.reason in REASONS
        assert result.reject.detail
        assert len(result.reject.detail) <= 500
        assert len(result.reject.topic) <= 512
        assert len(result.reject.payload) <= MAX_PAYLOAD
        return
    assert result.readings, "no readings and no reject"
    _, _, site, device_id, channel = topic.split("/")
    assert DEVICES[device_id].site == site
    for reading in result.readings:
        # Identity comes only from the topic, never from anything inside the payload.
        assert (reading.device_id, reading.site) == (device_id, site)
        assert math.isfinite(reading.value)
        assert math.isfinite(reading.ts)
        assert MIN_TS <= reading.ts <= NOW + 366 * 86400
        assert reading.seq is None or 0 <= reading.seq < 2**63
        assert isinstance(reading.drill, bool)
    kinds = {r.kind for r in result.readings}
    if channel == "status":
        assert kinds == {ReadingKind.STATUS}
    elif channel == "event":
        assert result.readings[0].kind is ReadingKind.EVENT
        assert result.readings[0].metric in EVENTS
    else:
        assert kinds == {ReadingKind.TELEMETRY}


_GOOD_TOPICS = st.sampled_from([f"shouwang/v1/{d.site}/{d.id}/{c}"
                                for d in DEVICES.values() for c in CHANNELS])
_TRICKY_CHARS = st.sampled_from([
    "\u202e", "\u200b", "\ufeff", "\x00", "／", "＋", "＃", "+", "#", "$", "..", " ", "\n",
    "\udcff", "g1\u0301", "Ｇ1", "ǵ1", "s1 ", "%s", "'", "\\", "😀",
])
_SEGMENTS = st.one_of(st.sampled_from(["s1", "g1", "w1", "小区a", "设备-7", "", "telemetry"]),
                      st.text(max_size=20), _TRICKY_CHARS)
_TOPICS = st.one_of(
    _GOOD_TOPICS,
    st.lists(_SEGMENTS, max_size=8).map("/".join),
    st.builds(lambda parts, c: "shouwang/v1/" + "/".join(parts) + "/" + c,
              st.lists(_SEGMENTS, min_size=0, max_size=4), st.sampled_from(CHANNELS)),
    st.builds(lambda a, b, c: f"shouwang/v1/{a}/{b}/{c}", _SEGMENTS, _SEGMENTS,
              st.one_of(st.sampled_from(CHANNELS), _SEGMENTS)),
    st.text(max_size=600),
)

_NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -0.0, 1e308, -1e308, 5e-324, 2**53 + 1, 2**63 - 1, 2**63, 2**64,
                     2**32 - 1, 2**31, -1]),
)
_SCALARS = st.one_of(st.none(), st.booleans(), _NUMBERS, st.text(max_size=50))
_JSON = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=12), inner, max_size=6)),
    max_leaves=40)


def _timestamps() -> st.SearchStrategy[object]:
    instants = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                            timezones=st.sampled_from([
                                UTC, timezone(timedelta(hours=8)),
                                timezone(timedelta(hours=-23, minutes=-59)),
                                timezone(timedelta(hours=23, minutes=59))]))
    near = st.floats(min_value=NOW - 30 * 86400, max_value=NOW + 30 * 86400)
    return st.one_of(
        st.none(), _NUMBERS, near, near.map(lambda s: int(s * 1000)),
        instants.map(lambda d: d.isoformat()),
        instants.map(lambda d: d.replace(tzinfo=None).isoformat()),  # no zone: rejected
        instants.map(lambda d: d.isoformat().replace("+00:00", "Z")),
        st.text(max_size=40), st.lists(_SCALARS, max_size=3), st.booleans(),
    )


_VALUES = st.dictionaries(
    st.one_of(st.sampled_from(["lel", "co", "battery", "heart_rate", "device_id", ""]),
              st.text(max_size=30)),
    st.one_of(_NUMBERS, _SCALARS, st.lists(_NUMBERS, max_size=3)), max_size=8)
_CONTRACT = st.fixed_dictionaries(
    {},
    optional={
        "ts": _timestamps(),
        "seq": st.one_of(_NUMBERS, st.integers(min_value=2**63 - 3, max_value=2**64 + 3),
                         st.text(max_size=5)),
        "values": st.one_of(_VALUES, _JSON),
        "event": st.one_of(st.sampled_from(sorted(EVENTS)), st.text(max_size=20), _SCALARS),
        "drill": st.one_of(st.booleans(), _SCALARS),
        # A payload cannot name another device or site: these must be ignored.
        "device_id": st.sampled_from(["w1", "设备-7", "admin"]),
        "site": st.sampled_from(["s2", "小区a"]),
        "status": st.one_of(st.sampled_from(["online", "offline", "ONLINE"]), _SCALARS),
    },
)


def _json_bytes(obj: object) -> bytes:
    # json (not orjson) so NaN/Infinity and integers beyond 64 bits reach the wire as tokens.
    return json.dumps(obj, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


@FUZZ
@given(topic=_TOPICS, payload=st.binary(max_size=2048))
def test_random_bytes_on_any_topic(topic: str, payload: bytes) -> None:
    _decode(topic, payload)


@FUZZ
@given(topic=_GOOD_TOPICS, obj=_JSON)
def test_arbitrary_json_on_real_topics(topic: str, obj: object) -> None:
    _decode(topic, _json_bytes(obj))


@FUZZ
@given(topic=_GOOD_TOPICS, items=st.one_of(_CONTRACT, st.lists(_CONTRACT, max_size=5)))
def test_contract_shaped_payloads_with_hostile_fields(topic: str, items: object) -> None:
    _decode(topic, _json_bytes(items))


@FUZZ
@given(topic=_GOOD_TOPICS, depth=st.integers(min_value=1, max_value=30_000),
       shape=st.sampled_from(["[", '{"values":', '{"a":[']), close=st.booleans())
def test_deep_nesting(topic: str, depth: int, shape: str, close: bool) -> None:
    closing = {"[": "]", '{"values":': "}", '{"a":[': "]}"}[shape] if close else ""
    _decode(topic, (shape * depth + "1" + closing * depth).encode())


@FUZZ
@given(topic=_GOOD_TOPICS, size=st.integers(min_value=0, max_value=70_000),
       kind=st.sampled_from(["string", "key", "list", "readings", "metrics"]))
def test_huge_strings_and_lists(topic: str, size: int, kind: str) -> None:
    one = {"ts": NOW, "seq": 1, "values": {"lel": 1.0}}
    obj: object = {
        "string": {"values": {"lel": 1}, "event": "sos", "ts": "x" * size},
        "key": {"values": {"k" * size: 1}, "event": "f" * size},
        "list": {"values": {"lel": 1}, "seq": [0] * size},
        "readings": [one] * (size // 40),
        "metrics": {"values": {f"m{i}": i for i in range(size // 12)}},
    }[kind]
    result = _decode(topic, orjson.dumps(obj))
    if result.readings:
        assert len(result.readings) <= 500 + 1  # the limit, plus an event's own reading


@FUZZ
@given(topic=_GOOD_TOPICS, text=st.text(
    alphabet=st.characters(codec=None, exclude_categories=()), max_size=200),
    raw=st.binary(min_size=1, max_size=8))
def test_unicode_tricks_inside_json_strings(topic: str, text: str, raw: bytes) -> None:
    # Lone surrogates, BOMs, overlong and truncated UTF-8 sequences inside strings.
    encoded = json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass")
    for payload in (
        b'{"values": {' + encoded + b": 1}}",
        b'{"event": ' + encoded + b', "values": {"lel": 1}}',
        b'{"values": {"lel": 1}, "ts": "' + raw + b'"}',
        b"\xef\xbb\xbf" + b'{"values": {"lel": 1}}',
        b'{"status": ' + encoded + b"}",
        encoded,
    ):
        _decode(topic, payload)


def test_seq_wraparound_is_kept_below_2_63_and_rejected_above() -> None:
    topic = "shouwang/v1/s1/g1/telemetry"
    for seq in (0, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1):
        result = _decode(topic, orjson.dumps({"seq": seq, "values": {"lel": 1}}))
        assert [r.seq for r in result.readings] == [seq]
    for seq in (2**63, 2**64 - 1, 2**64, -1, -(2**63)):
        result = _decode(topic, json.dumps({"seq": seq, "values": {"lel": 1}}).encode())
        assert result.reject is not None and result.reject.reason == "wrong_type"


def test_deep_nesting_is_malformed_json_not_a_recursion_error() -> None:
    # Found by this fuzzer: the stdlib fallback parser raised RecursionError here.
    for payload in (b"[" * 2000 + b"]" * 2000, b'{"values":' * 5000 + b"1" + b"}" * 5000):
        result = _decode("shouwang/v1/s1/g1/telemetry", payload)
        assert result.reject is not None and result.reject.reason == "malformed_json"


def test_nan_and_infinity_are_non_finite_everywhere() -> None:
    for token in (b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999"):
        for payload in (b'{"values": {"lel": ' + token + b"}}",
                        b'{"event": "sos", "values": {"lel": ' + token + b"}}"):
            topic = "shouwang/v1/s1/g1/" + ("event" if b"event" in payload else "telemetry")
            result = _decode(topic, payload)
            assert result.reject is not None and result.reject.reason == "non_finite"


def test_timestamps_far_in_the_past_or_future_are_rejected() -> None:
    for ts in (0, -1, 12, MIN_TS - 1, NOW + 400 * 86400, 1e30, (NOW + 400 * 86400) * 1000,
               "1970-01-01T00:00:00Z", "9999-12-31T23:59:59+00:00",
               "0001-01-01T00:00:00-23:59", "2026-11-26T00:00:00"):
        result = _decode("shouwang/v1/s1/g1/telemetry",
                         orjson.dumps({"ts": ts, "values": {"lel": 1}}))
        assert result.reject is not None and result.reject.reason == "bad_timestamp", ts

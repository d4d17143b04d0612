"""The decoder's pydantic-free path for common telemetry must agree with the pydantic model."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ingest.decoder import _fast_telemetry
from ingest.models import TelemetryPayload

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5))
_json = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8)
_numbers = st.one_of(st.integers(min_value=-(2**63), max_value=2**64 - 1),
                     st.floats(allow_nan=False, allow_infinity=False))
_fields = st.fixed_dictionaries({}, optional={
    "ts": st.one_of(_numbers, _json), "seq": st.one_of(_numbers, _json),
    "values": st.one_of(st.dictionaries(st.text(max_size=4), st.one_of(_numbers, _json),
                                        max_size=4), _json),
    "drill": st.one_of(st.booleans(), _json), "extra": _json})


@settings(max_examples=600, deadline=None)
@given(st.one_of(_fields, _json))
def test_fast_path_accepts_only_what_pydantic_accepts_with_the_same_values(item: object) -> None:
    item = orjson.loads(orjson.dumps(item))  # exactly what the decoder sees after parsing
    fast = _fast_telemetry(item)
    if fast is None:
        return  # pydantic decides, as before
    try:
        model = TelemetryPayload.model_validate(item)
    except ValidationError as err:
        raise AssertionError(f"fast path accepted what pydantic refuses: {item!r}") from err
    expected = (model.ts, model.seq, model.values, model.drill)
    assert fast == expected
    assert [type(v) for v in fast[2].values()] == [type(v) for v in model.values.values()]
    assert type(fast[0]) is type(model.ts) and type(fast[3]) is type(model.drill)


def test_the_usual_device_payload_takes_the_fast_path() -> None:
    item = orjson.loads(b'{"ts": 1764120000.5, "seq": 7, "values": {"lel": 1.5, "battery": 90}}')
    assert _fast_telemetry(item) == (1764120000.5, 7, {"lel": 1.5, "battery": 90}, False)


def test_unusual_shapes_are_left_to_pydantic() -> None:
    for item in ({"ts": "2026-11-26T00:00:00Z", "values": {"lel": 1}}, {"values": {}},
                 {"values": {"lel": True}}, {"seq": -1, "values": {"lel": 1}},
                 {"drill": 1, "values": {"lel": 1}}, {"values": {"lel": 1}, "site": "x"}, [1]):
        assert _fast_telemetry(item) is None

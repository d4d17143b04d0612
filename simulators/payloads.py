"""The device side of the MQTT contract: topic names and payload bytes.

``shouwang/v1/{site}/{device_id}/telemetry`` carries ``{"ts", "seq", "values"}``,
``.../event`` carries ``{"ts", "seq", "event"}`` and ``.../status`` the retained words
``online`` / ``offline``. Drill traffic adds ``"drill": true``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

import orjson

__all__ = [
    "OFFLINE",
    "ONLINE",
    "Channel",
    "encode_event",
    "encode_telemetry",
    "topic_for",
]

ONLINE = b"online"
OFFLINE = b"offline"


class Channel(StrEnum):
    TELEMETRY = "telemetry"
    EVENT = "event"
    STATUS = "status"


def topic_for(root: str, site: str, device_id: str, channel: Channel) -> str:
    """
    >>> topic_for("shouwang/v1", "sunshine", "gas-1", Channel.TELEMETRY)
    'shouwang/v1/sunshine/gas-1/telemetry'
    """
    return f"{root}/{site}/{device_id}/{channel.value}"


def encode_telemetry(*, ts: float, seq: int, values: Mapping[str, float],
                     drill: bool = False) -> bytes:
    """
    >>> encode_telemetry(ts=1764120000.1234, seq=7, values={"lel": 1.5})
    b'{"ts":1764120000.123,"seq":7,"values":{"lel":1.5}}'
    """
    body: dict[str, object] = {"ts": round(ts, 3), "seq": seq, "values": dict(values)}
    if drill:
        body["drill"] = True
    return orjson.dumps(body)


def encode_event(*, ts: float, seq: int, event: str, drill: bool = False) -> bytes:
    """
    >>> encode_event(ts=1764120000.5, seq=8, event="sos", drill=True)
    b'{"ts":1764120000.5,"seq":8,"event":"sos","drill":true}'
    """
    body: dict[str, object] = {"ts": round(ts, 3), "seq": seq, "event": event}
    if drill:
        body["drill"] = True
    return orjson.dumps(body)

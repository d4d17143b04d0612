"""Device and network faults as data, applied to a stream of outgoing messages.

A fault exercises what the pipeline must survive: sensors that stick or drift, radios that
drop out, brokers and networks that lose, duplicate or reorder messages, devices with a
wrong clock, and firmware that sends garbage. Each fault is a small frozen dataclass;
``FaultInjector`` applies a list of them (each bound to one device or to all) to the
messages a ``Community`` produces, with its own seeded random stream, so a faulty run
replays exactly.

Only ``Malformed`` breaks the MQTT contract: every other fault produces payloads the
ingest decoder accepts (a duplicate or a gap is for the pipeline to cope with, not a
reject).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import orjson

from shouwang.models import ReadingKind
from simulators.devices import stable_seed
from simulators.models import OutgoingMessage

__all__ = [
    "ClockSkew",
    "Drift",
    "Dropout",
    "Duplicated",
    "Fault",
    "FaultInjector",
    "FaultRun",
    "LostMessages",
    "Malformed",
    "Reordered",
    "StuckValue",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class StuckValue:
    """From ``after_s`` (simulated), ``metric`` repeats the first value it had then."""

    metric: str
    after_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Drift:
    """From ``after_s``, ``metric`` reads ``per_hour`` more for every simulated hour since."""

    metric: str
    per_hour: float
    after_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Dropout:
    """Nothing from the device between ``after_s`` and ``after_s + duration_s``.

    The device keeps counting, so the next message after the gap skips ``seq`` values.
    """

    after_s: float
    duration_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class LostMessages:
    """Each telemetry or event message is lost in transit with probability ``share``."""

    share: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Duplicated:
    """Each message is delivered twice with probability ``share`` (QoS 1 redelivery)."""

    share: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Reordered:
    """Each message is held back behind the device's next one with probability ``share``."""

    share: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockSkew:
    """The device's clock is ``offset_s`` seconds off: its payload ``ts`` is shifted."""

    offset_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Malformed:
    """Each telemetry message is replaced by a broken payload with probability ``share``."""

    share: float


Fault = (StuckValue | Drift | Dropout | LostMessages | Duplicated | Reordered | ClockSkew
         | Malformed)


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultRun:
    """A fault on one device, or on every device when ``device_id`` is None."""

    fault: Fault
    device_id: str | None = None


# Broken payloads of the kinds real firmware sends; each is a reject for the decoder.
_BROKEN: tuple[bytes, ...] = (
    b'{"ts": 1764120000.0, "seq": 1, "values": {"lel": 1.2',  # truncated
    b'{"ts": 1764120000.0, "seq": 1, "values": {"lel": NaN}}',  # not finite
    b'{"ts": 1764120000.0, "seq": 1, "values": {"lel": "1.2"}}',  # a string number
    b'{"ts": "yesterday", "seq": 1, "values": {"lel": 1.2}}',  # unreadable time
    b'{"ts": 1764120000.0, "seq": 1, "values": {}}',  # nothing in it
    b"\x00\xff\xfe garbage",  # not JSON at all
)


class FaultInjector:
    """Applies fault runs to messages in the order a community produced them.

    Parameters
    ----------
    runs
        The faults and the devices they hit.
    seed
        Seeds the random choices (which message is lost, duplicated...).

    Examples
    --------
    >>> msg = lambda seq: OutgoingMessage(
    ...     topic="r/s/g1/telemetry", payload=orjson.dumps(
    ...         {"ts": 1764120000.0 + seq, "seq": seq, "values": {"lel": 1.0 + seq}}),
    ...     device_id="g1", kind=ReadingKind.TELEMETRY, readings=1, t_s=float(seq))
    >>> out = FaultInjector([FaultRun(fault=StuckValue(metric="lel", after_s=1.0))],
    ...                     seed=1).apply([msg(0), msg(1), msg(2)])
    >>> [orjson.loads(m.payload)["values"]["lel"] for m in out]
    [1.0, 2.0, 2.0]
    """

    def __init__(self, runs: Sequence[FaultRun], *, seed: int) -> None:
        self._runs = tuple(runs)
        self._rng = random.Random(stable_seed(seed, "faults"))
        self._stuck: dict[tuple[str, str], float] = {}
        self._held: dict[str, OutgoingMessage] = {}  # device -> message waiting to be overtaken
        self.malformed = 0  # broken payloads let out, copies included (each is a reject)

    def apply(self, messages: Iterable[OutgoingMessage]) -> list[OutgoingMessage]:
        """The messages as the broker would see them; call repeatedly on later batches."""
        out: list[OutgoingMessage] = []
        for message in messages:
            faults = [r.fault for r in self._runs
                      if r.device_id is None or r.device_id == message.device_id]
            if not faults or message.kind is ReadingKind.STATUS:
                out.append(message)
                continue
            self._one(message, faults, out)
        return out

    def release(self) -> list[OutgoingMessage]:
        """Messages still held back for reordering (call at the end of a run)."""
        held, self._held = list(self._held.values()), {}
        self.malformed += sum(m.payload in _BROKEN for m in held)
        return held

    def _one(self, message: OutgoingMessage, faults: Sequence[Fault],
             out: list[OutgoingMessage]) -> None:
        rng = self._rng
        for fault in faults:
            if isinstance(fault, Dropout) and (
                    fault.after_s <= message.t_s < fault.after_s + fault.duration_s):
                return
            if isinstance(fault, LostMessages) and rng.random() < fault.share:
                return
        message = self._rewrite(message, faults)
        copies = 1
        for fault in faults:
            if isinstance(fault, Duplicated) and rng.random() < fault.share:
                copies = 2
        held = self._held.pop(message.device_id, None)
        if held is None and any(isinstance(f, Reordered) and rng.random() < f.share
                                for f in faults):
            self._held[message.device_id] = message
            return
        out.extend([message] * copies)
        if held is not None:
            out.append(held)  # the older message arrives after the newer one
        self.malformed += sum(m.payload in _BROKEN for m in ([message] * copies
                                                             + ([held] if held else [])))

    def _rewrite(self, message: OutgoingMessage, faults: Sequence[Fault]) -> OutgoingMessage:
        body = None
        for fault in faults:
            if isinstance(fault, Malformed):
                if message.kind is ReadingKind.TELEMETRY and self._rng.random() < fault.share:
                    broken = _BROKEN[self._rng.randrange(len(_BROKEN))]
                    return replace(message, payload=broken, readings=0)
                continue
            if isinstance(fault, ClockSkew):
                body = body if body is not None else orjson.loads(message.payload)
                body["ts"] = round(body["ts"] + fault.offset_s, 3)
                continue
            if not isinstance(fault, StuckValue | Drift) or message.t_s < fault.after_s:
                continue
            body = body if body is not None else orjson.loads(message.payload)
            values = body.get("values")
            if not values or fault.metric not in values:
                continue
            if isinstance(fault, StuckValue):
                key = (message.device_id, fault.metric)
                values[fault.metric] = self._stuck.setdefault(key, values[fault.metric])
            else:
                hours = (message.t_s - fault.after_s) / 3600.0
                values[fault.metric] = round(values[fault.metric] + fault.per_hour * hours, 3)
        if body is None:
            return message
        return replace(message, payload=orjson.dumps(body))

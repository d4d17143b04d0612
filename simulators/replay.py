"""Replay recorded readings (from the database or a CSV) into the pipeline at N× speed.

For regression tests of detectors and for incident review: the recorded day goes back
over MQTT as the devices first sent it — one telemetry message per (device, ts, seq),
events on ``.../event``, ``online`` readings as retained statuses — keeping the
recording's rhythm, ``speed`` times faster. Payload timestamps are moved to now (compressed
by ``speed``, as a live device at that pace would stamp them), so the replay is judged as
fresh data; ``keep_ts`` keeps the recorded instants instead.

CSV columns (header row): ``ts,device_id,site,metric,value`` and optionally ``seq``;
``ts`` is epoch seconds or ISO 8601 with a zone.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import itertools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from psycopg import AsyncConnection

from shouwang.catalog import EVENTS
from shouwang.models import ReadingKind
from simulators.models import OutgoingMessage
from simulators.payloads import OFFLINE, ONLINE, Channel, encode_event, topic_for
from simulators.publisher import MqttPublisher

__all__ = ["RecordedReading", "parse_instant", "play", "read_csv", "read_db",
           "replay_schedule"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedReading:
    ts: float
    device_id: str
    site: str
    metric: str
    value: float
    seq: int | None = None

    @property
    def kind(self) -> ReadingKind:
        if self.metric == "online":
            return ReadingKind.STATUS
        return ReadingKind.EVENT if self.metric in EVENTS else ReadingKind.TELEMETRY


def parse_instant(text: str) -> float:
    """Epoch seconds from ``"1764120000.5"`` or ISO 8601 with a zone."""
    try:
        return float(text)
    except ValueError:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            raise ValueError(f"timestamp {text!r} needs a zone") from None
        return parsed.timestamp()


def read_csv(path: Path) -> list[RecordedReading]:
    """Rows of a recorded CSV, in time order; a bad row fails with its line number."""
    out: list[RecordedReading] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                seq = row.get("seq") or None
                out.append(RecordedReading(ts=parse_instant(row["ts"]),
                                           device_id=row["device_id"],
                                           site=row["site"], metric=row["metric"],
                                           value=float(row["value"]),
                                           seq=int(seq) if seq is not None else None))
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{path}:{line}: {err}") from err
    out.sort(key=lambda r: (r.ts, r.device_id))  # a message's rows end up side by side
    return out


async def read_db(conn: AsyncConnection[Any], *, site: str, since_ts: float,
                  until_ts: float) -> list[RecordedReading]:  # Any: tuple rows
    """A site's stored readings in ``[since_ts, until_ts)``, in time order."""
    cur = await conn.execute(
        "SELECT extract(epoch FROM r.ts), r.device_id, d.site, r.metric, r.value, r.seq "
        "FROM readings r JOIN devices d ON d.id = r.device_id WHERE d.site = %s "
        "AND r.ts >= to_timestamp(%s) AND r.ts < to_timestamp(%s) ORDER BY r.ts, r.device_id",
        (site, since_ts, until_ts))
    return [RecordedReading(ts=float(ts), device_id=device_id, site=row_site, metric=metric,
                            value=float(value), seq=seq)
            for ts, device_id, row_site, metric, value, seq in await cur.fetchall()]


def _number(value: float) -> float | int:
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def replay_schedule(readings: Sequence[RecordedReading], *, topic_root: str, speed: float,
                    epoch0: float, keep_ts: bool = False,
                    drill: bool = False) -> list[tuple[float, OutgoingMessage]]:
    """``(wall seconds after start, message)`` for every recorded message, in order.

    >>> rows = [RecordedReading(ts=100.0, device_id="g1", site="s", metric=m, value=v, seq=7)
    ...         for m, v in (("lel", 1.5), ("battery", 90.0))]
    >>> rows.append(RecordedReading(ts=160.0, device_id="g1", site="s", metric="sos", value=1.0))
    >>> [(at, m.topic, m.payload) for at, m in replay_schedule(
    ...     rows, topic_root="r", speed=60.0, epoch0=1764120000.0)]
    ... # doctest: +NORMALIZE_WHITESPACE
    [(0.0, 'r/s/g1/telemetry', b'{"ts":1764120000.0,"seq":7,"values":{"lel":1.5,"battery":90}}'),
     (1.0, 'r/s/g1/event', b'{"ts":1764120001.0,"seq":0,"event":"sos"}')]
    """
    if speed <= 0:
        raise ValueError("speed must be positive")
    if not readings:
        return []
    start = readings[0].ts
    out: list[tuple[float, OutgoingMessage]] = []

    def message_ts(ts: float) -> float:
        return ts if keep_ts else epoch0 + (ts - start) / speed

    groups: Iterable[tuple[tuple[str, float, int | None, ReadingKind], Any]] = itertools.groupby(
        readings, key=lambda r: (r.device_id, r.ts, r.seq, r.kind))
    for (device_id, ts, seq, kind), members in groups:
        rows = list(members)
        site = rows[0].site
        at = round((ts - start) / speed, 6)
        if kind is ReadingKind.STATUS:
            payload = ONLINE if rows[-1].value > 0 else OFFLINE
            out.append((at, OutgoingMessage(
                topic=topic_for(topic_root, site, device_id, Channel.STATUS), payload=payload,
                device_id=device_id, kind=kind, readings=0, retain=True)))
            continue
        if kind is ReadingKind.EVENT:
            for row in rows:
                out.append((at, OutgoingMessage(
                    topic=topic_for(topic_root, site, device_id, Channel.EVENT),
                    payload=encode_event(ts=message_ts(ts), seq=seq or 0, event=row.metric,
                                         drill=drill),
                    device_id=device_id, kind=kind, readings=1)))
            continue
        body: dict[str, object] = {"ts": round(message_ts(ts), 3)}
        if seq is not None:
            body["seq"] = seq
        body["values"] = {row.metric: _number(row.value) for row in rows}
        if drill:
            body["drill"] = True
        out.append((at, OutgoingMessage(
            topic=topic_for(topic_root, site, device_id, Channel.TELEMETRY),
            payload=orjson.dumps(body), device_id=device_id, kind=kind, readings=len(rows))))
    return out


async def play(schedule: Sequence[tuple[float, OutgoingMessage]], publisher: MqttPublisher,
               stop: asyncio.Event) -> int:
    """Publish each message at its offset from now; returns how many were handed over."""
    started = time.monotonic()
    sent = 0
    for at, message in schedule:
        wait_s = at - (time.monotonic() - started)
        if wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait_s)
        if stop.is_set():
            break
        await publisher.publish(message.topic, message.payload, retain=message.retain,
                                key=message.device_id, readings=message.readings)
        sent += 1
    return sent

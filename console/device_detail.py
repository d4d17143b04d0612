"""One device in depth: its metrics and threshold lines, readings in time buckets, its alerts.

Buckets come from the TimescaleDB continuous aggregate ``readings_1m`` (1-minute min, max,
sum and count per device and metric, made by migration 7 only on TimescaleDB) when it
exists and the bucket is a whole number of minutes; otherwise from ``date_bin`` over the
raw readings (PostgreSQL 14+). Either way one row per bucket with min, mean and max, so a
chart of a day stays a few hundred points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from config.settings import ThresholdRule
from shouwang.catalog import metrics_for
from shouwang.models import Alert, Device
from shouwang.store.alerts import get_alert
from shouwang.store.schema import MINUTE_AGGREGATE_LEAVES_OUT

__all__ = [
    "Bucket",
    "ThresholdLine",
    "device_alerts",
    "has_minute_aggregate",
    "metric_choices",
    "reading_buckets",
    "threshold_lines",
]

_BUCKETS = """
SELECT extract(epoch FROM date_bin(make_interval(secs => %s), ts, to_timestamp(0))) AS bucket,
       min(value), avg(value), max(value), count(*)
FROM readings
WHERE device_id = %s AND metric = %s AND ts >= to_timestamp(%s) AND ts < to_timestamp(%s)
  AND NOT drill
GROUP BY bucket ORDER BY bucket
"""
# The same buckets from the 1-minute aggregate: for buckets of whole minutes, re-bucketing
# the minutes gives the raw query's answer (except readings in the part of the first
# minute before the window, which the minutes cannot split off).
_MINUTE_BUCKETS = """
SELECT extract(epoch FROM date_bin(make_interval(secs => %s), bucket, to_timestamp(0))) AS b,
       min(low), sum(total) / sum(n), max(high), sum(n)
FROM readings_1m
WHERE device_id = %s AND metric = %s AND bucket >= to_timestamp(%s) AND bucket < to_timestamp(%s)
GROUP BY b ORDER BY b
"""
_MINUTE_S = 60
# Drill data stays on the drill page (console/drills.py): charts and history show real data.
_DEVICE_ALERTS = "SELECT id FROM alerts WHERE device_id = %s AND NOT drill " \
                 "ORDER BY opened_at DESC, id DESC " \
                 "LIMIT %s"


@dataclass(frozen=True, slots=True, kw_only=True)
class Bucket:
    start: float  # epoch seconds
    low: float
    mean: float
    high: float
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ThresholdLine:
    metric: str
    hazard: str
    value: float
    severity: str
    direction: str  # above | below


def metric_choices(device: Device) -> list[dict[str, str]]:
    return [{"key": m.key, "unit": m.unit, "label_zh": m.label_zh, "label_en": m.label_en}
            for m in metrics_for(device.type)]


def threshold_lines(device: Device, rules: Sequence[ThresholdRule]) -> list[ThresholdLine]:
    """The levels the detectors use for this device: its own overrides, else the rules'."""
    lines = []
    for rule in rules:
        if rule.device_type != device.type:
            continue
        levels: Sequence[float] = rule.levels
        override = device.thresholds.get(rule.metric)
        if override is not None and len(rule.levels) == len(override):
            levels = override
        for level, severity in zip(levels, rule.severities, strict=False):
            lines.append(ThresholdLine(metric=rule.metric, hazard=rule.hazard,
                                       value=float(level), severity=severity,
                                       direction=rule.direction))
    return lines


async def has_minute_aggregate(conn: AsyncConnection[Any]) -> bool:  # Any: tuple rows
    cur = await conn.execute("SELECT to_regclass('readings_1m') IS NOT NULL")
    row = await cur.fetchone()
    return bool(row and row[0])


async def reading_buckets(conn: AsyncConnection[Any], device_id: str,  # Any: tuple rows
                          metric: str, *, start: float, end: float, bucket_s: float,
                          aggregate: bool = True) -> list[Bucket]:
    """``aggregate=False`` always buckets the raw readings (the benchmark compares both)."""
    whole_minutes = bucket_s >= _MINUTE_S and bucket_s % _MINUTE_S == 0
    if aggregate and whole_minutes and metric not in MINUTE_AGGREGATE_LEAVES_OUT \
            and await has_minute_aggregate(conn):
        # Every minute that overlaps the window: the current one (still filling) included.
        first = start // _MINUTE_S * _MINUTE_S
        cur = await conn.execute(_MINUTE_BUCKETS, (bucket_s, device_id, metric, first, end))
    else:
        cur = await conn.execute(_BUCKETS, (bucket_s, device_id, metric, start, end))
    return [Bucket(start=float(r[0]), low=float(r[1]), mean=float(r[2]), high=float(r[3]),
                   count=int(r[4])) for r in await cur.fetchall()]


async def device_alerts(conn: AsyncConnection[Any], device_id: str,  # Any: tuple rows
                        limit: int = 20) -> list[Alert]:
    cur = await conn.execute(_DEVICE_ALERTS, (device_id, limit))
    return [await get_alert(conn, row[0]) for row in await cur.fetchall()]

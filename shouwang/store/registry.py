"""Sites and devices from config, mirrored into the database at startup."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from psycopg import AsyncConnection

from shouwang.models import Device, Site

__all__ = ["sync_registry"]

_SITE = """
INSERT INTO sites (id, name, address) VALUES (%s, %s, %s)
ON CONFLICT (id) DO UPDATE SET name = excluded.name, address = excluded.address
"""
_DEVICE = """
INSERT INTO devices (id, type, site, name, building, unit, floor, room, lat, lon,
                     report_interval_s, thresholds)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET
    type = excluded.type, site = excluded.site, name = excluded.name,
    building = excluded.building, unit = excluded.unit, floor = excluded.floor,
    room = excluded.room, lat = excluded.lat, lon = excluded.lon,
    report_interval_s = excluded.report_interval_s, thresholds = excluded.thresholds,
    updated_at = now()
"""


async def sync_registry(conn: AsyncConnection[Any], sites: Iterable[Site],
                        devices: Iterable[Device]) -> None:
    """Upsert every configured site and device (config is the source of truth)."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(_SITE, [(s.id, s.name, s.address) for s in sites])
        await cur.executemany(_DEVICE, [
            (d.id, d.type.value, d.site, d.name, d.location.building, d.location.unit,
             d.location.floor, d.location.room, d.location.lat, d.location.lon,
             d.report_interval_s, orjson.dumps(dict(d.thresholds)).decode())
            for d in devices])

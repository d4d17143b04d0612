"""Read-only queries for the console's device and notification panels."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from console.device_status import device_status
from console.models import DeviceState
from shouwang.catalog import DeviceType
from shouwang.models import Device, Location, Notification, NotificationStatus, Site

__all__ = ["list_devices", "list_notifications", "list_sites"]

_DEVICES = """
SELECT id, type, site, name, building, unit, floor, room, lat, lon, report_interval_s,
       thresholds, status, extract(epoch FROM last_seen), battery
FROM devices ORDER BY site, id
"""

_NOTIFICATIONS = """
SELECT id, alert_id, receiver, channel, body, status, attempts, last_error,
       extract(epoch FROM created_at), extract(epoch FROM sent_at)
FROM notifications
"""
_NEWEST_FIRST = " ORDER BY created_at DESC, id DESC LIMIT %s"


async def list_devices(conn: AsyncConnection[Any], *, now: float,  # Any: tuple rows
                       offline_after_intervals: float) -> list[DeviceState]:
    cur = await conn.execute(_DEVICES)
    states = []
    for row in await cur.fetchall():
        device = Device(
            id=row[0], type=DeviceType(row[1]), site=row[2], name=row[3],
            location=Location(building=row[4], unit=row[5], floor=row[6], room=row[7],
                              lat=row[8], lon=row[9]),
            report_interval_s=row[10],
            thresholds={metric: (float(levels[0]), float(levels[1]))
                        for metric, levels in row[11].items()},
        )
        last_seen = None if row[13] is None else float(row[13])
        states.append(DeviceState(
            device=device, last_seen=last_seen, battery=row[14],
            status=device_status(stored=row[12], last_seen=last_seen,
                                 report_interval_s=device.report_interval_s, now=now,
                                 offline_after_intervals=offline_after_intervals),
        ))
    return states


async def list_notifications(conn: AsyncConnection[Any], *,  # Any: tuple rows
                             alert_id: int | None = None, limit: int = 100,
                             sites: list[str] | None = None) -> list[Notification]:
    """The outbox, newest first: what each alert caused to be sent, and whether it went.

    ``sites`` keeps only the messages about those sites' alerts (None: every site).
    """
    where: list[str] = []
    args: list[Any] = []  # Any: mixed SQL parameters
    if alert_id is not None:
        where.append("alert_id = %s")
        args.append(alert_id)
    if sites is not None:
        where.append("alert_id IN (SELECT id FROM alerts WHERE site = ANY(%s))")
        args.append(sites)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    cur = await conn.execute(_NOTIFICATIONS + clause + _NEWEST_FIRST, (*args, limit))
    return [
        Notification(id=r[0], alert_id=r[1], receiver=r[2], channel=r[3], body=r[4],
                     status=NotificationStatus(r[5]), attempts=r[6], last_error=r[7],
                     created_at=float(r[8]), sent_at=None if r[9] is None else float(r[9]))
        for r in await cur.fetchall()
    ]


async def list_sites(conn: AsyncConnection[Any],  # Any: tuple rows
                     sites: list[str] | None = None) -> list[Site]:
    """The registered sites (only ``sites`` when given), for names and addresses."""
    if sites is None:
        cur = await conn.execute("SELECT id, name, address FROM sites ORDER BY id")
    else:
        cur = await conn.execute("SELECT id, name, address FROM sites WHERE id = ANY(%s) "
                                 "ORDER BY id", (sites,))
    return [Site(id=r[0], name=r[1], address=r[2]) for r in await cur.fetchall()]

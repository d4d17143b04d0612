"""Alerts and their audit trail; every state change goes through the lifecycle table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from psycopg import AsyncConnection, AsyncCursor

from shouwang.lifecycle import LIVE_STATUSES, check_transition
from shouwang.models import Alert, AlertStatus, Detection, DetectionKind, Location, Severity

__all__ = [
    "AlertEvent",
    "UnknownAlert",
    "Upserted",
    "get_alert",
    "list_alerts",
    "list_events",
    "record_event",
    "transition",
    "upsert_live",
]

_COLUMNS = """
a.id, a.site, a.device_id, a.hazard, a.kind, a.severity, a.status,
extract(epoch FROM a.opened_at), extract(epoch FROM a.acknowledged_at),
extract(epoch FROM a.resolved_at), a.last_value, a.message, a.drill,
coalesce(d.building, ''), coalesce(d.unit, ''), coalesce(d.floor, ''), coalesce(d.room, ''),
d.lat, d.lon
"""
_SELECT = f"SELECT {_COLUMNS} FROM alerts a LEFT JOIN devices d ON d.id = a.device_id"
_LIVE = tuple(s.value for s in LIVE_STATUSES)


class UnknownAlert(LookupError):
    """No alert has that id."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertEvent:
    alert_id: int
    at: float
    actor: str
    source: str
    action: str
    from_status: str | None
    to_status: str
    note: str


def _row_to_alert(row: Sequence[Any]) -> Alert:  # Any: one database row
    return Alert(
        id=row[0], site=row[1], device_id=row[2], hazard=row[3], kind=DetectionKind(row[4]),
        severity=Severity(row[5]), status=AlertStatus(row[6]), opened_at=float(row[7]),
        acknowledged_at=None if row[8] is None else float(row[8]),
        resolved_at=None if row[9] is None else float(row[9]), last_value=row[10],
        message=row[11], drill=row[12],
        location=Location(building=row[13], unit=row[14], floor=row[15], room=row[16],
                          lat=row[17], lon=row[18]),
    )


async def _event(cur: AsyncCursor[Any], alert_id: int, now: float, actor: str, source: str,
                 action: str, from_status: str | None, to_status: str, note: str) -> None:
    await cur.execute(
        "INSERT INTO alert_events (alert_id, at, actor, source, action, from_status, "
        "to_status, note) VALUES (%s, to_timestamp(%s), %s, %s, %s, %s, %s, %s)",
        (alert_id, now, actor, source, action, from_status, to_status, note))


async def record_event(cur: AsyncCursor[Any], alert_id: int, *, now: float, actor: str,
                       source: str, action: str, status: AlertStatus, note: str) -> None:
    """An audit row for something that happened to an alert without changing its status
    (a reminder sent, a fallback used)."""
    await _event(cur, alert_id, now, actor, source, action, status.value, status.value, note)


class Upserted(NamedTuple):
    alert: Alert
    created: bool  # a new alert was opened
    raised: bool   # the live alert's severity went up


async def upsert_live(cur: AsyncCursor[Any], detection: Detection, now: float) -> Upserted:
    """Open an alert for a firing detection, or update the live one.

    Call inside a transaction. A repeat never opens a second alert: severity only rises,
    the last value and message follow the latest detection.
    """
    await cur.execute(
        "WITH live AS (SELECT id, severity FROM alerts WHERE device_id = %s AND hazard = %s "
        "AND status = ANY(%s) FOR UPDATE) "
        "UPDATE alerts a SET severity = greatest(a.severity, %s), last_value = %s, "
        "message = %s, updated_at = to_timestamp(%s), last_detection_at = to_timestamp(%s) "
        "FROM live WHERE a.id = live.id RETURNING a.id, live.severity < %s",
        (detection.device_id, detection.hazard, list(_LIVE), int(detection.severity),
         detection.value, detection.message, now, now, int(detection.severity)))
    row: Any = await cur.fetchone()  # Any: one database row
    created = row is None
    raised = bool(row[1]) if row is not None else False
    if created:
        await cur.execute(
            "INSERT INTO alerts (site, device_id, hazard, kind, severity, status, opened_at, "
            "last_value, message, drill, updated_at, last_detection_at) VALUES (%s, %s, %s, %s, "
            "%s, 'open', to_timestamp(%s), %s, %s, %s, to_timestamp(%s), to_timestamp(%s)) "
            "ON CONFLICT (device_id, hazard) WHERE status IN "
            "('open', 'acknowledged', 'escalated', 'suppressed') DO NOTHING RETURNING id",
            (detection.site, detection.device_id, detection.hazard, detection.kind.value,
             int(detection.severity), now, detection.value, detection.message,
             detection.drill, now, now))
        row = await cur.fetchone()
        if row is None:  # a concurrent writer opened it first: update that one instead
            return await upsert_live(cur, detection, now)
        await _event(cur, row[0], now, "system", "detector", "opened", None, "open",
                     detection.message)
    await cur.execute(_SELECT + " WHERE a.id = %s", (row[0],))
    found = await cur.fetchone()
    assert found is not None
    return Upserted(_row_to_alert(found), created, raised)


async def transition(conn: AsyncConnection[Any], alert_id: int, wanted: AlertStatus, *,
                     actor: str, source: str, note: str, now: float,
                     action: str | None = None) -> Alert:
    """Move an alert to ``wanted`` if the lifecycle allows it, with an audit row."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute("SELECT status FROM alerts WHERE id = %s FOR UPDATE", (alert_id,))
        row = await cur.fetchone()
        if row is None:
            raise UnknownAlert(alert_id)
        current = AlertStatus(row[0])
        check_transition(current, wanted)
        sets = ["status = %s", "updated_at = to_timestamp(%s)"]
        args: list[Any] = [wanted.value, now]  # Any: mixed SQL parameters
        if wanted is AlertStatus.ACKNOWLEDGED:
            sets += ["acknowledged_at = to_timestamp(%s)", "acknowledged_by = %s"]
            args += [now, actor]
        elif wanted in (AlertStatus.RESOLVED, AlertStatus.EXPIRED):
            sets += ["resolved_at = to_timestamp(%s)", "resolved_by = %s"]
            args += [now, actor]
        await cur.execute(f"UPDATE alerts SET {', '.join(sets)} WHERE id = %s",
                          (*args, alert_id))
        await _event(cur, alert_id, now, actor, source, action or wanted.value, current.value,
                     wanted.value, note)
        await cur.execute(_SELECT + " WHERE a.id = %s", (alert_id,))
        found = await cur.fetchone()
        assert found is not None
        return _row_to_alert(found)


async def get_alert(conn: AsyncConnection[Any], alert_id: int) -> Alert:
    cur = await conn.execute(_SELECT + " WHERE a.id = %s", (alert_id,))
    row = await cur.fetchone()
    if row is None:
        raise UnknownAlert(alert_id)
    return _row_to_alert(row)


async def list_alerts(conn: AsyncConnection[Any], *, statuses: Sequence[AlertStatus] = (),
                      site: str | None = None, limit: int = 500) -> list[Alert]:
    where: list[str] = []
    args: list[Any] = []  # Any: mixed SQL parameters
    if statuses:
        where.append("a.status = ANY(%s)")
        args.append([s.value for s in statuses])
    if site is not None:
        where.append("a.site = %s")
        args.append(site)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    cur = await conn.execute(
        _SELECT + clause + " ORDER BY a.severity DESC, a.opened_at DESC LIMIT %s",
        (*args, limit))
    return [_row_to_alert(r) for r in await cur.fetchall()]


async def list_events(conn: AsyncConnection[Any], alert_id: int) -> list[AlertEvent]:
    cur = await conn.execute(
        "SELECT alert_id, extract(epoch FROM at), actor, source, action, from_status, "
        "to_status, note FROM alert_events WHERE alert_id = %s ORDER BY at, id", (alert_id,))
    return [AlertEvent(alert_id=r[0], at=float(r[1]), actor=r[2], source=r[3], action=r[4],
                       from_status=r[5], to_status=r[6], note=r[7])
            for r in await cur.fetchall()]

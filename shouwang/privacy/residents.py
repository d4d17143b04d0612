"""A resident's data on request: export everything that concerns them, or delete it.

Deleting keeps the emergency record and removes the person from it. Alerts and their
history (who acknowledged an SOS, when) are the community's record of how an emergency
was handled, and the notification outbox proves who was told; deleting those rows would
break that trail, so they stay, pseudonymised: the alert's value and message, the
notification texts and free-text notes are replaced by a random pseudonym that only the
``audit_log`` row of the deletion links back to the resident's config id. Everything that
is only about the person goes: their health readings, stored raw payloads (rejects), the
detectors' learned state of their wearables, and the wearables' names in the registry.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import IO, Any

import orjson
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from config.settings import ResidentConfig, Settings
from shouwang.audit import AuditCategory, record
from shouwang.catalog import EVENTS
from shouwang.privacy.health import delete_health_readings

__all__ = ["ResidentError", "delete_resident", "export_resident", "find_resident"]

_READINGS = """
SELECT ts, device_id, metric, value, seq, received_at, drill FROM readings
WHERE device_id = ANY(%s) AND (metric = ANY(%s)) = %s ORDER BY device_id, metric, ts
"""
_ALERTS = "SELECT * FROM alerts WHERE device_id = ANY(%s) ORDER BY id"
_ALERT_EVENTS = ("SELECT * FROM alert_events WHERE alert_id IN "
                 "(SELECT id FROM alerts WHERE device_id = ANY(%s)) ORDER BY alert_id, id")
_NOTIFICATIONS = ("SELECT id, alert_id, step, receiver, channel, body, status, attempts, "
                  "created_at, sent_at FROM notifications WHERE alert_id IN "
                  "(SELECT id FROM alerts WHERE device_id = ANY(%s)) ORDER BY alert_id, id")
_EARLIER = ("SELECT at, actor, action, detail FROM audit_log WHERE category = 'privacy' "
            "AND subject = %s ORDER BY id")
_JSON = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z


class ResidentError(ValueError):
    """No such resident, or the request is incomplete."""


def find_resident(settings: Settings, resident_id: str) -> ResidentConfig:
    for resident in settings.residents:
        if resident.id == resident_id:
            return resident
    raise ResidentError(f"no resident {resident_id!r} in the configuration (residents:)")


async def _rows(conn: AsyncConnection[Any], query: str,  # Any: tuple rows
                params: tuple[Any, ...]) -> AsyncIterator[bytes]:  # Any: SQL parameters
    async with conn.cursor(row_factory=dict_row) as cur:
        async for row in cur.stream(query, params):
            yield orjson.dumps(row, option=_JSON, default=_bytes)


def _bytes(value: Any) -> str:  # Any: whatever orjson cannot encode itself
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    raise TypeError(type(value).__name__)


async def export_resident(conn: AsyncConnection[Any], settings: Settings,  # Any: tuple rows
                          resident_id: str, out: IO[bytes], *, actor: str, now: float,
                          requested_by: str = "") -> dict[str, int]:
    """Write the resident's data to ``out`` as one JSON object, streamed (a month of a
    wearable is about a million readings); returns how many items each part holds."""
    resident = find_resident(settings, resident_id)
    devices = list(resident.devices)
    registry = settings.device_map()
    head = {
        "resident": resident.model_dump(mode="json"),
        "exported_at": datetime.fromtimestamp(now, UTC).isoformat(),
        "devices": [{"id": d, "name": registry[d].name, "type": registry[d].type.value,
                     "place": registry[d].location.describe()} for d in devices],
        "retention_days": settings.privacy.health_retention_days,
    }
    out.write(orjson.dumps(head)[:-1])
    counts: dict[str, int] = {}
    events = sorted(EVENTS)
    parts: tuple[tuple[str, str, tuple[Any, ...]], ...] = (  # Any: SQL parameters
        ("readings", _READINGS, (devices, events, False)),
        ("events", _READINGS, (devices, events, True)),
        ("alerts", _ALERTS, (devices,)),
        ("alert_events", _ALERT_EVENTS, (devices,)),
        ("notifications", _NOTIFICATIONS, (devices,)),
        ("earlier_requests", _EARLIER, (resident.id,)),
    )
    for name, query, params in parts:
        out.write(b',"' + name.encode() + b'":[')
        count = 0
        async for item in _rows(conn, query, params):
            out.write((b"," if count else b"") + item)
            count += 1
        out.write(b"]")
        counts[name] = count
    out.write(b"}\n")
    await record(conn, category=AuditCategory.PRIVACY, action="resident_exported",
                 actor=actor, now=now, subject=resident.id,
                 detail={"requested_by": requested_by, "counts": counts})
    return counts


async def delete_resident(conn: AsyncConnection[Any], settings: Settings,  # Any: tuple rows
                          resident_id: str, *, actor: str, now: float,
                          requested_by: str = "") -> dict[str, Any]:  # Any: JSON summary
    """Delete the resident's health data and pseudonymise their alerts (``conn`` in
    autocommit: readings go in batches, the rest in one transaction with its audit row)."""
    resident = find_resident(settings, resident_id)
    devices = list(resident.devices)
    readings, _ = await delete_health_readings(
        conn, devices, settings.privacy.health_metrics, before=float("inf"),
        batch=settings.privacy.purge_batch)
    pseudonym = f"resident-{secrets.token_hex(6)}"
    removed = f"[已按本人请求删除个人数据 personal data deleted on request: {pseudonym}]"
    counts: dict[str, int] = {"readings": readings}
    statements = (
        ("rejects", "DELETE FROM rejects WHERE device_id = ANY(%s)", (devices,)),
        ("detector_state", "DELETE FROM detector_state WHERE device_id = ANY(%s)", (devices,)),
        ("alerts", "UPDATE alerts SET last_value = NULL, message = %s "
                   "WHERE device_id = ANY(%s)", (removed, devices)),
        ("alert_notes", "UPDATE alert_events SET note = %s WHERE note <> '' AND alert_id IN "
                        "(SELECT id FROM alerts WHERE device_id = ANY(%s))", (removed, devices)),
        ("notifications", "UPDATE notifications SET body = %s, last_error = '' "
                          "WHERE alert_id IN (SELECT id FROM alerts WHERE device_id = ANY(%s))",
         (removed, devices)),
        ("device_names", "UPDATE devices SET name = '' WHERE id = ANY(%s)", (devices,)),
    )
    async with conn.transaction():
        for name, statement, params in statements:
            cur = await conn.execute(statement, params)
            counts[name] = max(cur.rowcount, 0)
        await record(conn, category=AuditCategory.PRIVACY, action="resident_deleted",
                     actor=actor, now=now, subject=resident.id,
                     detail={"requested_by": requested_by, "pseudonym": pseudonym,
                             "devices": devices, "counts": counts})
    return {"resident": resident.id, "pseudonym": pseudonym, "counts": counts}

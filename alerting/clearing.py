"""A hazard that stops firing: noted on the live alert's audit trail, status unchanged.

Clearing does not resolve: a person confirms that the danger is over (the console
resolves). The note tells them the sensor is back to normal.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncCursor

from shouwang.lifecycle import LIVE_STATUSES
from shouwang.models import Alert, Detection
from shouwang.store.alerts import get_alert

__all__ = ["record_cleared"]

_LIVE = [s.value for s in LIVE_STATUSES]


async def record_cleared(cur: AsyncCursor[Any], detection: Detection,
                         now: float) -> Alert | None:
    """Add a "cleared" event to the live alert for the detection's device and hazard.

    Returns the alert, or None when there is no live one. Call inside a transaction.
    """
    await cur.execute(
        "UPDATE alerts SET last_value = coalesce(%s, last_value), updated_at = to_timestamp(%s) "
        "WHERE device_id = %s AND hazard = %s AND status = ANY(%s) RETURNING id, status",
        (detection.value, now, detection.device_id, detection.hazard, _LIVE))
    row = await cur.fetchone()
    if row is None:
        return None
    alert_id, status = row
    await cur.execute(
        "INSERT INTO alert_events (alert_id, at, actor, source, action, from_status, "
        "to_status, note) VALUES (%s, to_timestamp(%s), 'system', 'detector', 'cleared', "
        "%s, %s, %s)",
        (alert_id, now, status, status, detection.message))
    return await get_alert(cur.connection, alert_id)

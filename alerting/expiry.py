"""Auto-expiry: an alert nobody acted on and nothing changed for too long is closed.

Open, escalated and suppressed alerts whose last detection (``last_detection_at``: the
one that opened it or the latest repeat) is older than ``expire_after_s`` become
expired, with an audit row saying why. Escalation steps, reminders, silences and
inhibition do not restart that clock: only the device saying it again does. Acknowledged alerts are
left alone: someone owns them and resolves them. An expired alert is no longer live, so
the device's next hazardous reading opens a fresh alert and pages again.
"""

from __future__ import annotations

import logging
from typing import Any

from psycopg import AsyncConnection

from shouwang.models import Alert, AlertStatus
from shouwang.store.alerts import transition

__all__ = ["expire_stale"]

log = logging.getLogger(__name__)

_STALE = """
SELECT id FROM alerts
WHERE status IN ('open', 'escalated', 'suppressed')
  AND coalesce(last_detection_at, updated_at) <= to_timestamp(%s)
ORDER BY coalesce(last_detection_at, updated_at), id LIMIT %s FOR UPDATE SKIP LOCKED
"""


async def expire_stale(conn: AsyncConnection[Any], *, now: float, max_age_s: float,
                       limit: int) -> list[Alert]:
    """Expire up to ``limit`` stale alerts (call inside a transaction); returns them."""
    cur = await conn.execute(_STALE, (now - max_age_s, limit))
    expired = []
    for (alert_id,) in await cur.fetchall():
        await conn.execute("DELETE FROM escalations WHERE alert_id = %s", (alert_id,))
        expired.append(await transition(
            conn, alert_id, AlertStatus.EXPIRED, actor="system", source="expiry",
            action="expired",
            note=f"nobody acknowledged it and no detection for {max_age_s:g} s", now=now))
        log.info("alert=%d expired: unacknowledged and no detection for %gs", alert_id,
                 max_age_s)
    return expired

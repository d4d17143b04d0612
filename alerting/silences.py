"""Maintenance windows: silences per device or area, with an expiry and an audit record.

A silence names a site and optionally a building or a device, and the hazards it covers
(empty = all). It is the audit record itself: who created it, why, when; cancelling it
records who and when. An alert that a silence covers is suppressed with a note naming
the silence. No silence ever applies to an SOS call: a person asking for help is never
somebody's maintenance.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, AsyncCursor

from alerting.models import NotifyContext
from shouwang.models import Alert, AlertStatus
from shouwang.store.alerts import transition

__all__ = [
    "UNSILENCEABLE",
    "Silence",
    "SilenceStage",
    "UnsilenceableHazard",
    "active_silence",
    "cancel_silence",
    "create_silence",
    "list_silences",
]

log = logging.getLogger(__name__)

UNSILENCEABLE = frozenset({"sos"})

_COLUMNS = ("id, site, device_id, building, hazards, extract(epoch FROM starts_at), "
            "extract(epoch FROM ends_at), created_by, reason")


class UnsilenceableHazard(ValueError):
    """The silence would cover a hazard that may never be silenced (SOS)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Silence:
    id: int
    site: str
    device_id: str | None
    building: str | None
    hazards: tuple[str, ...]  # empty = every hazard except the unsilenceable
    starts_at: float
    ends_at: float
    created_by: str
    reason: str


def _row(row: Sequence[Any]) -> Silence:  # Any: one database row
    return Silence(id=row[0], site=row[1], device_id=row[2], building=row[3],
                   hazards=tuple(row[4]), starts_at=float(row[5]), ends_at=float(row[6]),
                   created_by=row[7], reason=row[8])


async def create_silence(conn: AsyncConnection[Any], *, site: str, created_by: str,
                         reason: str, starts_at: float, ends_at: float, now: float,
                         device_id: str | None = None, building: str | None = None,
                         hazards: Sequence[str] = ()) -> Silence:
    if UNSILENCEABLE & set(hazards):
        raise UnsilenceableHazard(f"{sorted(UNSILENCEABLE)} can never be silenced")
    if ends_at <= starts_at:
        raise ValueError("a silence must end after it starts")
    if not reason.strip() or not created_by.strip():
        raise ValueError("a silence needs a reason and who created it (the audit record)")
    cur = await conn.execute(
        "INSERT INTO silences (site, device_id, building, hazards, starts_at, ends_at, "
        "created_by, reason, created_at) VALUES (%s, %s, %s, %s, to_timestamp(%s), "
        f"to_timestamp(%s), %s, %s, to_timestamp(%s)) RETURNING {_COLUMNS}",
        (site, device_id, building, list(hazards), starts_at, ends_at, created_by, reason,
         now))
    row = await cur.fetchone()
    assert row is not None
    silence = _row(row)
    log.info("silence=%d created by %s site=%s building=%s device_id=%s until %s: %s",
             silence.id, created_by, site, building, device_id, ends_at, reason)
    return silence


async def cancel_silence(conn: AsyncConnection[Any], silence_id: int, *, by: str,
                         now: float) -> bool:
    """End a silence early; False when there is no such running silence."""
    cur = await conn.execute(
        "UPDATE silences SET cancelled_at = to_timestamp(%s), cancelled_by = %s, "
        "ends_at = least(ends_at, to_timestamp(%s)) "
        "WHERE id = %s AND cancelled_at IS NULL AND ends_at > to_timestamp(%s)",
        (now, by, now, silence_id, now))
    return cur.rowcount == 1


async def list_silences(conn: AsyncConnection[Any], now: float) -> list[Silence]:
    """Silences running at ``now`` or still to come, soonest ending first."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM silences WHERE cancelled_at IS NULL "
        "AND ends_at > to_timestamp(%s) ORDER BY ends_at, id", (now,))
    return [_row(r) for r in await cur.fetchall()]


async def active_silence(cur: AsyncCursor[Any], alert: Alert, now: float) -> Silence | None:
    """The silence covering ``alert`` at ``now``, if any (never for an SOS)."""
    if alert.hazard in UNSILENCEABLE:
        return None
    await cur.execute(
        f"SELECT {_COLUMNS} FROM silences WHERE site = %s AND cancelled_at IS NULL "
        "AND starts_at <= to_timestamp(%s) AND ends_at > to_timestamp(%s) "
        "AND (device_id IS NULL OR device_id = %s) AND (building IS NULL OR building = %s) "
        "AND (cardinality(hazards) = 0 OR %s = ANY(hazards)) ORDER BY ends_at DESC LIMIT 1",
        (alert.site, now, now, alert.device_id, alert.location.building, alert.hazard))
    row = await cur.fetchone()
    return None if row is None else _row(row)


class SilenceStage:
    """Suppresses silenced open alerts (with a note naming the silence); passes on the rest."""

    async def __call__(self, ctx: NotifyContext, alerts: Sequence[Alert]) -> Sequence[Alert]:
        passed: list[Alert] = []
        for alert in alerts:
            silence = await active_silence(ctx.cur, alert, ctx.now)
            if silence is None:
                passed.append(alert)
                continue
            if alert.status is AlertStatus.OPEN:
                await transition(ctx.cur.connection, alert.id, AlertStatus.SUPPRESSED,
                                 actor="system", source="silence", action="silenced",
                                 note=f"silence #{silence.id} by {silence.created_by} until "
                                      f"{silence.ends_at:.0f}: {silence.reason}",
                                 now=ctx.now)
            log.info("alert=%d silenced by silence=%d", alert.id, silence.id)
        return passed

"""Deleting a finished drill's data, keeping its scorecard.

A drill's data are the readings marked drill on the devices it played on within its time
window, the drill alerts those devices opened in that window, and every row that points
at those alerts (history, messages, escalations, and whatever table references alerts
later: found from the schema's foreign keys, so a new table cannot be forgotten). Real
readings and real alerts on the same devices in the same window are not touched. The
``drills`` row stays, with its report, and ``purged_at`` set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection, sql

from config.settings import DrillSettings
from shouwang.models import Severity
from simulators.models import GroundTruth
from simulators.scorecard import fail_drill, read_scorecard, save_scorecard

__all__ = ["DrillAlreadyFinished", "DrillNotFinished", "PurgeCounts", "UnknownDrill",
           "abandon_drill", "purge_drill", "purge_expired", "retire"]

log = logging.getLogger(__name__)

_REFERENCING = """
SELECT n.nspname, r.relname, a.attname
FROM pg_constraint c
JOIN pg_class r ON r.oid = c.conrelid
JOIN pg_namespace n ON n.oid = r.relnamespace
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
WHERE c.contype = 'f' AND c.confrelid = 'alerts'::regclass AND cardinality(c.conkey) = 1
ORDER BY r.relname
"""


class UnknownDrill(LookupError):
    """No drill with that id."""


class DrillNotFinished(RuntimeError):
    """The drill is still running: its data is still coming in."""


class DrillAlreadyFinished(ValueError):
    """The drill has already ended (scored, failed, or abandoned before)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeCounts:
    drill_id: int
    readings: int
    alerts: int
    referencing: dict[str, int] = field(default_factory=dict)  # table -> rows deleted

    def to_json(self) -> dict[str, Any]:  # Any: JSON values
        return {"drill_id": self.drill_id, "readings": self.readings, "alerts": self.alerts,
                **self.referencing}


async def abandon_drill(conn: AsyncConnection[Any], drill_id: int,  # Any: tuple rows
                        *, now: float, reason: str,
                        silent_since: float | None = None) -> bool:
    """Mark a drill whose player died (a crash, a kill -9) as failed, so it can be purged,
    and score it with what happened so far (the alerts its devices opened until ``now``).

    A person decides it with ``shouwang drill --abandon ID``; the orphan sweep
    (``simulators.drill_watch``) decides it for a drill whose player has not beaten its
    heartbeat since before ``silent_since``, and gets False (nothing done) when the
    heartbeat is more recent than that by the time the row is locked.
    """
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT finished_at, scenario, site, device_id, extract(epoch FROM started_at), "
            "report, extract(epoch FROM coalesce(heartbeat_at, started_at)) "
            "FROM drills WHERE id = %s FOR UPDATE", (drill_id,))
        row = await cur.fetchone()
        if row is None:
            raise UnknownDrill(f"no drill {drill_id}")
        finished_at, scenario, site, device_id, started_at, running, beat_at = row
        if finished_at is not None:
            raise DrillAlreadyFinished(f"drill {drill_id} has already finished")
        if silent_since is not None and float(beat_at) >= silent_since:
            return False
        truths = [GroundTruth(scenario=scenario, device_id=e["device_id"], site=site,
                              hazard=e["hazard"], severity=Severity[e["severity"].upper()],
                              onset_ts=float(e["onset_ts"]))
                  for e in running.get("expected", ())]
        card = await read_scorecard(conn, drill_id=drill_id, scenario=scenario, site=site,
                                    device_id=device_id or running.get("device_id", ""),
                                    started_at=float(started_at), truths=truths)
        await save_scorecard(conn, card, now)
        await fail_drill(conn, drill_id, now, f"abandoned: {reason}")
    log.warning("drill %d abandoned (%s): %d of %d expected alerts had opened", drill_id,
                reason, len(card.rows) - len(card.missed), len(card.rows))
    return True


async def purge_drill(conn: AsyncConnection[Any], drill_id: int,  # Any: tuple rows
                      *, now: float) -> PurgeCounts:
    """Delete the drill's data in one transaction; purging twice deletes nothing more."""
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT started_at, finished_at, devices FROM drills WHERE id = %s FOR UPDATE",
            (drill_id,))
        row = await cur.fetchone()
        if row is None:
            raise UnknownDrill(f"no drill {drill_id}")
        started_at, finished_at, devices = row
        if finished_at is None:
            raise DrillNotFinished(f"drill {drill_id} is still running")
        cur = await conn.execute(
            "SELECT id FROM alerts WHERE drill AND device_id = ANY(%s) "
            "AND opened_at BETWEEN %s AND %s", (devices, started_at, finished_at))
        alert_ids = [int(r[0]) for r in await cur.fetchall()]
        referencing: dict[str, int] = {}
        if alert_ids:
            cur = await conn.execute(_REFERENCING)
            for schema, table, column in await cur.fetchall():
                deleted = await conn.execute(
                    sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(
                        sql.Identifier(schema, table), sql.Identifier(column)), (alert_ids,))
                referencing[str(table)] = deleted.rowcount
        deleted = await conn.execute("DELETE FROM alerts WHERE id = ANY(%s)", (alert_ids,))
        alerts = deleted.rowcount
        deleted = await conn.execute(
            "DELETE FROM readings WHERE drill AND device_id = ANY(%s) AND ts BETWEEN %s AND %s",
            (devices, started_at, finished_at))
        readings = deleted.rowcount
        await conn.execute("UPDATE drills SET purged_at = to_timestamp(%s) WHERE id = %s",
                           (now, drill_id))
    counts = PurgeCounts(drill_id=drill_id, readings=readings, alerts=alerts,
                         referencing=referencing)
    log.info("drill %d purged: %s", drill_id, counts.to_json())
    return counts


async def purge_expired(conn: AsyncConnection[Any], *, now: float,  # Any: tuple rows
                        purge_after_s: float) -> list[PurgeCounts]:
    """Purge every finished drill not purged yet that ended ``purge_after_s`` ago or more."""
    cur = await conn.execute(
        "SELECT id FROM drills WHERE purged_at IS NULL AND finished_at IS NOT NULL "
        "AND finished_at <= to_timestamp(%s) ORDER BY id", (now - purge_after_s,))
    return [await purge_drill(conn, int(r[0]), now=now) for r in await cur.fetchall()]


async def retire(connection: Callable[[], contextlib.AbstractAsyncContextManager[
                     AsyncConnection[Any]]],  # Any: tuple rows
                 policy: DrillSettings, *, finished_at: float, stop: asyncio.Event,
                 clock: Callable[[], float]) -> None:
    """After a drill: when drill data is not kept, purge what is due now, then wait until
    this drill is due too (or ``stop``) and purge again. Drills whose wait was cut short
    are purged by the next drill's sweep (or ``shouwang drill --purge ID``)."""
    if policy.keep:
        return
    async with connection() as conn:
        await purge_expired(conn, now=clock(), purge_after_s=policy.purge_after_s)
    due_in = finished_at + policy.purge_after_s - clock()
    if due_in <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), due_in)
    if stop.is_set():
        return
    async with connection() as conn:
        await purge_expired(conn, now=clock(), purge_after_s=policy.purge_after_s)

"""Inhibition: a bigger alert makes smaller ones noise.

A confirmed fire in a building makes its per-detector smoke and heat alerts redundant;
a power outage explains every "device offline" on the site. The rules are data
(``AlertingSettings.inhibit_rules``); an inhibited alert is suppressed with a note
naming the alert that inhibits it, and nobody is paged for it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncCursor

from alerting.models import NotifyContext
from config.settings import InhibitRule
from shouwang.lifecycle import LIVE_STATUSES
from shouwang.models import Alert, AlertStatus
from shouwang.store.alerts import get_alert, transition

__all__ = ["InhibitStage", "inhibitor_of", "released"]

log = logging.getLogger(__name__)

_LIVE = [s.value for s in LIVE_STATUSES if s is not AlertStatus.SUPPRESSED]


async def inhibitor_of(cur: AsyncCursor[Any], alert: Alert,
                       rules: Sequence[InhibitRule]) -> tuple[int, str] | None:
    """(alert id, rule name) of a live alert that inhibits ``alert``, if any."""
    for rule in rules:
        if alert.hazard not in rule.target_hazards:
            continue
        building = alert.location.building if rule.scope == "building" else None
        await cur.execute(
            "SELECT a.id FROM alerts a LEFT JOIN devices d ON d.id = a.device_id "
            "WHERE a.site = %s AND a.hazard = ANY(%s) AND a.status = ANY(%s) AND a.id <> %s "
            "AND a.drill = %s AND (%s::text IS NULL OR coalesce(d.building, '') = %s) "
            "ORDER BY a.id LIMIT 1",
            (alert.site, list(rule.source_hazards), _LIVE, alert.id, alert.drill, building,
             building))
        row = await cur.fetchone()
        if row is not None:
            return int(row[0]), rule.name
    return None


# Suppressed alerts whose latest suppression was an inhibition (not a silence).
_INHIBITED = """
SELECT a.id FROM alerts a
WHERE a.status = 'suppressed'
  AND (SELECT e.action FROM alert_events e WHERE e.alert_id = a.id
       AND e.to_status = 'suppressed' ORDER BY e.at DESC, e.id DESC LIMIT 1) = 'inhibited'
ORDER BY a.id LIMIT %s FOR UPDATE OF a SKIP LOCKED
"""


async def released(cur: AsyncCursor[Any], rules: Sequence[InhibitRule],
                   limit: int) -> list[int]:
    """Ids of inhibited alerts no live alert inhibits any more (its inhibitor ended)."""
    await cur.execute(_INHIBITED, (limit,))
    candidates = [int(row[0]) for row in await cur.fetchall()]
    free = []
    for alert_id in candidates:
        alert = await get_alert(cur.connection, alert_id)
        if await inhibitor_of(cur, alert, rules) is None:
            free.append(alert_id)
    return free


class InhibitStage:
    def __init__(self, rules: Sequence[InhibitRule]) -> None:
        self._rules = tuple(rules)

    async def __call__(self, ctx: NotifyContext, alerts: Sequence[Alert]) -> Sequence[Alert]:
        passed: list[Alert] = []
        for alert in alerts:
            found = await inhibitor_of(ctx.cur, alert, self._rules)
            if found is None:
                passed.append(alert)
                continue
            source_id, rule = found
            if alert.status in (AlertStatus.OPEN, AlertStatus.ESCALATED):
                await transition(ctx.cur.connection, alert.id, AlertStatus.SUPPRESSED,
                                 actor="system", source="inhibit", action="inhibited",
                                 note=f"inhibited by alert #{source_id} ({rule})", now=ctx.now)
            log.info("alert=%d inhibited by alert=%d rule=%s", alert.id, source_id, rule)
        return passed

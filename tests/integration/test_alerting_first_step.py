"""The first escalation step goes out in the alert's own transaction, at any clock reading.

The database keeps timestamps to the microsecond: an alert opened at a clock reading
with more digits reads back up to half a microsecond later. Step 0 (``after_s`` 0) must
still count as due at once, not wait for the escalator's next tick (that wait was up to
0.2 s of every other alert's latency in bench/alert_latency.py --policy).
"""

from __future__ import annotations

from typing import Any

import pytest

from alerting.escalation import EscalateStage, StepQueue
from alerting.messages import MessageComposer
from alerting.models import NotifyContext
from alerting.recipients import RecipientResolver
from alerting.storm_gate import StormGate
from shouwang.models import AlertStatus, Severity
from shouwang.store import connect
from shouwang.store.alerts import upsert_live
from shouwang.store.registry import sync_registry
from tests.integration.test_alerting_escalation import gas, settings_for

pytestmark = pytest.mark.integration

# Rounds up to ….649346 in timestamptz: the alert reads back as opened after "now".
ROUNDS_UP = 1_764_130_102.6493457


@pytest.mark.parametrize("now", [ROUNDS_UP, 1_764_130_102.6493451, 1_764_124_800.0])
async def test_step_zero_is_queued_with_the_alert_whatever_the_rounding(
        pg_dsn: str, db_schema: str, now: float) -> None:
    settings = settings_for(9)  # nothing is sent: the port is never used
    config = settings.alerting
    composer = MessageComposer(config, sites=settings.site_map(),
                               devices=settings.device_map())
    queue = StepQueue(RecipientResolver(config), StormGate(
        composer, threshold=config.storm_threshold, window_s=config.storm_window_s))
    stage = EscalateStage(config, queue)
    conn = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        await sync_registry(conn, settings.site_map().values(), settings.device_map().values())
        async with conn.transaction(), conn.cursor() as cur:
            upserted = await upsert_live(cur, gas(60.0, Severity.RED), now)
            alert = upserted[0]
            unrouted = await stage(NotifyContext(now=now, cur=cur), [alert])
        assert unrouted == []
        rows: list[Any] = await (await conn.execute(
            "SELECT step, receiver FROM notifications ORDER BY step, receiver")).fetchall()
        # Step 0 (station) and the red-only step 1 (speakers), both due at once.
        assert rows == [(0, "station"), (1, "speakers")]
        cur = await conn.execute("SELECT next_step, extract(epoch FROM due_at)::float8 "
                                 "FROM escalations")
        next_step, due_at = (await cur.fetchone()) or (None, None)
        assert next_step == 2 and due_at == pytest.approx(now + 60, abs=1e-3)
        cur = await conn.execute("SELECT status FROM alerts")
        assert (await cur.fetchone()) == (AlertStatus.OPEN.value,)  # not "escalated" by a tick
    finally:
        await conn.close()

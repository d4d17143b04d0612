"""The outbox dispatcher on a real PostgreSQL, with a scripted notifier.

Two dispatchers share the rows without sending one twice; one hanging channel does
not hold up the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from alerting.notifiers.base import NotifyError
from alerting.outbox import Dispatcher, Pool, enqueue
from config.settings import AlertingSettings, DeviceConfig, Receiver, Settings, SiteConfig
from shouwang.catalog import DeviceType
from shouwang.models import Alert, Detection, DetectionKind, Severity
from shouwang.store import connect
from shouwang.store.alerts import upsert_live
from shouwang.store.registry import sync_registry
from tests.integration.test_alerting_service import eventually

pytestmark = pytest.mark.integration

NOW = 1_764_124_800.0
SITE = SiteConfig(id="sunshine", name="阳光小区")


def _receiver(name: str) -> Receiver:
    return Receiver(name=name, channel="sms", urls=(f"json://127.0.0.1:1/{name}",))


class ScriptedNotifier:
    """Records sends; a receiver named in ``hang`` never answers."""

    def __init__(self, *, delay_s: float = 0.0, hang: frozenset[str] = frozenset()) -> None:
        self.sent: list[tuple[str, str, float]] = []  # receiver, body, monotonic time
        self._delay_s = delay_s
        self._hang = hang

    async def send(self, receiver: Receiver, title: str, body: str, *,
                   timeout_s: float) -> None:
        if receiver.name in self._hang:
            await asyncio.Event().wait()  # ignores timeout_s: the dispatcher must cut it off
        await asyncio.sleep(self._delay_s)
        if not title.startswith("【红色预警】阳光小区"):
            raise NotifyError(f"unexpected title {title!r}", retryable=False)
        self.sent.append((receiver.name, body, time.monotonic()))


@asynccontextmanager
async def database(pg_dsn: str, schema: str, devices: int) -> AsyncIterator[AsyncConnection[Any]]:
    settings = Settings(sites=(SITE,), devices=tuple(
        DeviceConfig(id=f"gas-{n}", type=DeviceType.GAS, site="sunshine", room=str(500 + n))
        for n in range(devices)))
    db = await connect(pg_dsn, schema, autocommit=True)
    try:
        await sync_registry(db, settings.site_map().values(), settings.device_map().values())
        yield db
    finally:
        await db.close()


async def open_alerts(db: AsyncConnection[Any], count: int,
                      receivers: tuple[Receiver, ...]) -> list[Alert]:
    alerts = []
    async with db.transaction(), db.cursor() as cur:
        for n in range(count):
            detection = Detection(ts=NOW, device_id=f"gas-{n}", site="sunshine", hazard="gas",
                                  kind=DetectionKind.HAZARD, severity=Severity.RED, firing=True,
                                  metric="lel", value=55.0)
            alert, _, _ = await upsert_live(cur, detection, NOW)
            bodies = {"sms": f"alert {alert.id}"}
            assert await enqueue(cur, alert, 0, receivers, bodies, NOW) == len(receivers)
            # Queueing the same step again adds nothing: nothing is sent twice.
            assert await enqueue(cur, alert, 0, receivers, bodies, NOW) == 0
            alerts.append(alert)
    return alerts


@asynccontextmanager
async def dispatching(pg_dsn: str, schema: str,
                      dispatchers: list[Dispatcher]) -> AsyncIterator[None]:
    stop = asyncio.Event()
    async with AsyncExitStack() as stack:
        tasks = []
        for index, dispatcher in enumerate(dispatchers):
            # One pool each: as two alerting processes would have.
            pool: Pool = AsyncConnectionPool(
                pg_dsn, open=False, min_size=1, max_size=4,
                kwargs={"autocommit": True, "options": f"-c search_path={schema}"})
            await pool.open(wait=True, timeout=10)
            stack.push_async_callback(pool.close)
            tasks.append(asyncio.create_task(dispatcher.run(pool, stop),
                                             name=f"test.dispatch:{index}"))
        try:
            yield
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 15)


async def _statuses(db: AsyncConnection[Any]) -> list[tuple[str, str, int, str]]:
    cur = await db.execute("SELECT receiver, status, attempts, last_error FROM notifications "
                           "ORDER BY alert_id, receiver")
    return await cur.fetchall()


async def test_two_dispatchers_never_send_the_same_row(pg_dsn: str, db_schema: str) -> None:
    receivers = (_receiver("station"), _receiver("family"))
    config = AlertingSettings(receivers=receivers)
    notifier = ScriptedNotifier(delay_s=0.01)
    async with database(pg_dsn, db_schema, devices=30) as db:
        alerts = await open_alerts(db, 30, receivers)
        dispatchers = [Dispatcher(notifier, config, wake=asyncio.Event(), clock=lambda: NOW,
                                  max_in_flight=8) for _ in range(2)]
        async with dispatching(pg_dsn, db_schema, dispatchers):
            async def all_sent() -> bool:
                return all(row[1] == "sent" for row in await _statuses(db))
            await eventually(all_sent, "every row sent")
            await asyncio.sleep(0.5)  # polls of both dispatchers: room for a duplicate
        sends = [(receiver, body) for receiver, body, _ in notifier.sent]
        expected = {(r.name, f"alert {a.id}") for a in alerts for r in receivers}
        assert len(sends) == len(expected) == 60
        assert set(sends) == expected
        assert {row[2] for row in await _statuses(db)} == {1}


async def test_a_hanging_channel_does_not_hold_up_the_others(pg_dsn: str,
                                                            db_schema: str) -> None:
    receivers = (_receiver("stuck"), _receiver("station"))
    config = AlertingSettings(receivers=receivers, send_timeout_s=0.5, retry_base_s=5.0)
    notifier = ScriptedNotifier(hang=frozenset({"stuck"}))
    async with database(pg_dsn, db_schema, devices=1) as db:
        await open_alerts(db, 1, receivers)
        dispatcher = Dispatcher(notifier, config, wake=asyncio.Event(), clock=lambda: NOW)
        started = time.monotonic()
        async with dispatching(pg_dsn, db_schema, [dispatcher]):
            async def station_sent() -> bool:
                return ("station", "sent") in [(r[0], r[1]) for r in await _statuses(db)]
            await eventually(station_sent, "the healthy channel")
            assert notifier.sent[0][2] - started < 0.5  # did not wait for the stuck one

            async def stuck_cut_off() -> bool:
                return next(r for r in await _statuses(db) if r[0] == "stuck")[2] == 1
            await eventually(stuck_cut_off, "the stuck send to be cut off")
        [stuck] = [r for r in await _statuses(db) if r[0] == "stuck"]
        assert stuck[1] == "pending" and "no answer within 0.5s" in stuck[3]


async def test_a_receiver_removed_from_config_fails_without_retrying(
        pg_dsn: str, db_schema: str) -> None:
    notifier = ScriptedNotifier()
    async with database(pg_dsn, db_schema, devices=1) as db:
        await open_alerts(db, 1, (_receiver("gone"),))
        config = AlertingSettings(receivers=(_receiver("station"),))
        dispatcher = Dispatcher(notifier, config, wake=asyncio.Event(), clock=lambda: NOW)
        async with dispatching(pg_dsn, db_schema, [dispatcher]):
            async def failed() -> bool:
                return [r[:3] for r in await _statuses(db)] == [("gone", "failed", 1)]
            await eventually(failed, "the orphan row to fail")
        assert "no longer configured" in (await _statuses(db))[0][3]
        assert notifier.sent == []

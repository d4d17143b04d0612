"""Channels under failure: a provider answering 500, a fallback receiver, a hanging
endpoint, a rate limit. Real HTTP to local sinks; the clock is injected."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from psycopg import AsyncConnection

from config.settings import (
    AlertingSettings,
    ChannelLimit,
    EscalationPolicy,
    EscalationStep,
    Receiver,
    Recipient,
    RecipientGroup,
    Settings,
)
from shouwang.sink import LocalSink
from tests.integration.local_servers import hanging_server, running_sink
from tests.integration.test_alerting_escalation import gas, service, settings_for
from tests.integration.test_alerting_service import eventually

pytestmark = pytest.mark.integration




def with_groups(base: Settings, receivers: tuple[Receiver, ...],
                recipients: tuple[Recipient, ...], **alerting: Any) -> Settings:  # Any: fields
    config = AlertingSettings(
        receivers=receivers,
        groups=(RecipientGroup(name="fire_station", recipients=recipients),),
        policies=(EscalationPolicy(name="all", max_reminders=0,
                                   steps=(EscalationStep(groups=("fire_station",)),)),),
        retry_base_s=1.0, retry_max_s=4.0, send_timeout_s=5.0, **alerting)
    return base.model_copy(update={"alerting": config})


async def outbox(db: AsyncConnection[Any]) -> list[tuple[Any, ...]]:  # Any: outbox rows
    cur = await db.execute("SELECT receiver, status, attempts > 0, last_error <> '' "
                           "FROM notifications ORDER BY id")
    return await cur.fetchall()


async def test_provider_down_then_fallback_then_recovery(pg_dsn: str, db_schema: str,
                                                         sink: LocalSink) -> None:
    async with running_sink() as backup:
        settings = with_groups(
            settings_for(sink.port),
            receivers=(Receiver(name="zhang-sms", channel="sms",
                                urls=(f"json://127.0.0.1:{sink.port}/sms",)),
                       Receiver(name="zhang-wecom", channel="wecom",
                                urls=(f"json://127.0.0.1:{backup.port}/wecom",))),
            recipients=(Recipient(name="zhang", receivers=("zhang-sms", "zhang-wecom"),
                                  fallback_after_s=30.0),),
            max_attempts=20)  # retries every ≤4 s here: enough to outlast the outage
        sink.fail_next = 10_000  # the SMS provider answers 500 until it recovers
        async with service(settings, pg_dsn, db_schema) as (run, db):
            await run.publish(gas(32.0))

            async def failed_once() -> bool:
                return await outbox(db) == [("zhang-sms", "pending", True, True)]
            await eventually(failed_once, "the first failed SMS attempt")
            for _ in range(6):  # 24 s of retries against the failing provider
                run.clock.advance(4.0)
                await asyncio.sleep(0.25)
            assert backup.messages == []  # the fallback waits its 30 s
            run.clock.advance(6.5)  # 30.5 s after the SMS was queued
            await eventually(lambda: _has(backup, 1), "the fallback message")
            # The fallback's own form (a chat app: the long text), not the primary's SMS.
            fallback = backup.messages[0].body
            assert fallback.startswith(
                "【橙色预警】阳光小区 燃气泄漏\n地点：阳光小区3号楼2单元5层502室")
            assert "处置建议：请立即关闭燃气阀门" in fallback

            sink.fail_next = 0  # the provider recovers
            run.clock.advance(4.0)
            await eventually(lambda: _has(sink, 1), "the retried SMS after recovery")
            run.clock.advance(60.0)
            await asyncio.sleep(0.5)
            assert [m.channel for m in sink.messages] == ["sms"]
            assert [m.channel for m in backup.messages] == ["wecom"]
            rows = await outbox(db)
            assert [(r[0], r[1]) for r in rows] == [("zhang-sms", "sent"),
                                                    ("zhang-wecom", "sent")]


async def _has(sink: LocalSink, count: int) -> bool:
    return len(sink.messages) >= count


async def test_a_hanging_channel_does_not_hold_up_the_others(pg_dsn: str, db_schema: str,
                                                              sink: LocalSink) -> None:
    async with hanging_server() as port:
        settings = with_groups(
            settings_for(sink.port),
            receivers=(Receiver(name="hook", channel="webhook",
                                urls=(f"json://127.0.0.1:{port}/hook",)),
                       Receiver(name="zhang-sms", channel="sms",
                                urls=(f"json://127.0.0.1:{sink.port}/sms",))),
            recipients=(Recipient(name="bms", receivers=("hook",)),
                        Recipient(name="zhang", receivers=("zhang-sms",))),
            channels=(ChannelLimit(channel="webhook", timeout_s=1.5),))
        async with service(settings, pg_dsn, db_schema) as (run, db):
            await run.publish(gas(32.0))
            await eventually(lambda: _has(sink, 1), "the SMS while the webhook hangs")
            rows = {r[0]: r for r in await outbox(db)}
            assert rows["hook"][1:3] == ("pending", False)  # still hanging, not yet recorded

            async def timed_out() -> bool:
                cur = await db.execute("SELECT attempts, last_error FROM notifications "
                                       "WHERE receiver = 'hook'")
                row = await cur.fetchone()
                return row is not None and row[0] == 1
            await eventually(timed_out, "the webhook send cut off by its channel timeout")
            cur = await db.execute("SELECT status, last_error FROM notifications "
                                   "WHERE receiver = 'hook'")
            status, error = await cur.fetchone() or ("", "")
            assert status == "pending" and "no answer within 1.5s" in error


async def test_a_channel_rate_limit_defers_instead_of_dropping(pg_dsn: str, db_schema: str,
                                                               sink: LocalSink) -> None:
    settings = with_groups(
        settings_for(sink.port),
        receivers=tuple(Receiver(name=f"p{n}", channel="sms",
                                 urls=(f"json://127.0.0.1:{sink.port}/sms",))
                        for n in range(3)),
        recipients=tuple(Recipient(name=f"p{n}", receivers=(f"p{n}",)) for n in range(3)),
        channels=(ChannelLimit(channel="sms", per_minute=2),))
    async with service(settings, pg_dsn, db_schema) as (run, db):
        await run.publish(gas(32.0))
        await eventually(lambda: _has(sink, 2), "two messages within the rate")
        await asyncio.sleep(0.6)
        assert len(sink.messages) == 2
        run.clock.advance(30.0)  # one more token
        await eventually(lambda: _has(sink, 3), "the deferred third message")

        async def three_sent_first_time() -> bool:  # deferring is not a failed attempt
            cur = await db.execute("SELECT count(*) FROM notifications WHERE status = 'sent' "
                                   "AND attempts = 1")
            return await cur.fetchone() == (3,)
        await eventually(three_sent_first_time, "three rows sent at their first attempt")

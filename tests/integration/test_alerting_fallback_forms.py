"""A fallback receiver gets the text of its own channel, not the failed primary's.

Both primaries fail (their provider answers 500): a person's SMS falls back to email,
which gets the long form; the loudspeakers fall back to an SMS, which gets the one-segment
SMS, not the spoken broadcast. Real PostgreSQL, two local sinks, injected clock.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from psycopg import AsyncConnection

from config.settings import DeviceConfig, Receiver, Recipient
from shouwang.catalog import DeviceType
from shouwang.models import Severity
from shouwang.sink import LocalSink
from tests.integration.local_servers import running_sink
from tests.integration.test_alerting_channels import with_groups
from tests.integration.test_alerting_escalation import gas, service, settings_for
from tests.integration.test_alerting_service import eventually

pytestmark = pytest.mark.integration

SMS_55 = "【守望】阳光小区3号楼2单元502 燃气泄漏 55%LEL 请立即关阀开窗勿动电器"


async def tried(db: AsyncConnection[Any], count: int) -> bool:
    cur = await db.execute("SELECT count(*) FROM notifications WHERE attempts > 0 "
                           "AND status <> 'sent'")
    row = await cur.fetchone()
    return row is not None and row[0] >= count


async def test_each_fallback_gets_its_own_channels_text(pg_dsn: str, db_schema: str,
                                                        sink: LocalSink) -> None:
    async with running_sink() as down:
        down.fail_next = 10_000  # the primaries' provider is down throughout

        def at(where: LocalSink, path: str) -> tuple[str]:
            return (f"json://127.0.0.1:{where.port}/{path}",)
        settings = with_groups(
            settings_for(sink.port),
            receivers=(Receiver(name="zhang-sms", channel="sms", urls=at(down, "sms")),
                       Receiver(name="zhang-email", channel="email", urls=at(sink, "email")),
                       Receiver(name="speakers", channel="broadcast",
                                urls=at(down, "broadcast")),
                       Receiver(name="speakers-sms", channel="sms",
                                urls=at(sink, "guard-sms"))),
            recipients=(Recipient(name="zhang", receivers=("zhang-sms", "zhang-email"),
                                  fallback_after_s=10.0),
                        Recipient(name="loudspeakers", receivers=("speakers", "speakers-sms"),
                                  fallback_after_s=10.0)),
            max_attempts=20)
        async with service(settings, pg_dsn, db_schema) as (run, db):
            await run.publish(gas(55.0, Severity.RED))
            await eventually(lambda: tried(db, 2), "both primaries failing once")
            assert sink.messages == []
            run.clock.advance(10.5)
            await eventually(lambda: _has(sink, 2), "both fallbacks")
            cur = await db.execute("SELECT receiver, body FROM notifications")
            primary = {receiver: body for receiver, body in await cur.fetchall()}

    [email] = sink.received("email")
    lines = email.body.split("\n")
    assert lines[:2] == ["【红色预警】阳光小区 燃气泄漏", "地点：阳光小区3号楼2单元5层502室"]
    assert ("处置建议：请立即关闭燃气阀门，打开门窗通风，不要开关任何电器，不要使用明火，"
            "并迅速撤离到室外") in lines
    [guard] = sink.received("guard-sms")
    assert guard.body == SMS_55 and len(guard.body) <= 70  # not the spoken broadcast
    # The primaries' rows kept their own forms.
    assert primary["zhang-sms"] == SMS_55
    assert json.loads(primary["speakers"])["text"].startswith("紧急通知：")


async def _has(sink: LocalSink, count: int) -> bool:
    return len(sink.messages) >= count


async def test_a_storm_summary_falls_back_as_a_summary(pg_dsn: str, db_schema: str,
                                                       sink: LocalSink) -> None:
    async with running_sink() as down:
        down.fail_next = 10_000
        base = with_groups(
            settings_for(sink.port),
            receivers=(Receiver(name="zhang-sms", channel="sms",
                                urls=(f"json://127.0.0.1:{down.port}/sms",)),
                       Receiver(name="speakers", channel="broadcast",
                                urls=(f"json://127.0.0.1:{sink.port}/broadcast",))),
            recipients=(Recipient(name="zhang", receivers=("zhang-sms", "speakers"),
                                  fallback_after_s=10.0),),
            max_attempts=20, storm_threshold=2)
        devices = tuple(DeviceConfig(id=f"smoke-{n}", type=DeviceType.SMOKE, site="sunshine",
                                     building="7", room=str(100 + n)) for n in range(3))
        settings = base.model_copy(update={"devices": base.devices + devices})
        async with service(settings, pg_dsn, db_schema) as (run, db):
            await run.publish(*(gas(9.0, device=f"smoke-{n}", hazard="smoke")
                                for n in range(3)))
            await eventually(lambda: tried(db, 1), "the summary SMS failing once")
            run.clock.advance(10.5)
            await eventually(lambda: _has(sink, 1), "the fallback")
            cur = await db.execute("SELECT count(*) FROM alerts")
            assert await cur.fetchone() == (3,)
    [spoken] = sink.received("broadcast")
    message = json.loads(spoken.body)
    assert message["text"] == "【守望】阳光小区 同时出现3条告警：烟雾报警3条。详情请登录值班台查看"
    assert len(message["alert_ids"]) == 3
    assert message["zone"] == {"scope": "building", "site": "sunshine", "building": "7"}

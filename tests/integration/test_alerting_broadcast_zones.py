"""Community loudspeakers over MQTT (the real Mosquitto stands in for the IP broadcast
controller): each zone is a topic, and a building's alert reaches only its zone."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from config.settings import (
    AlertingSettings,
    EscalationPolicy,
    EscalationStep,
    Receiver,
    Recipient,
    RecipientGroup,
)
from shouwang.models import Severity
from shouwang.sink import LocalSink
from tests.integration.test_alerting_escalation import _sent, gas, service, settings_for
from tests.integration.test_alerting_service import eventually

pytestmark = pytest.mark.integration


@contextmanager
def listening(address: tuple[str, int], topic: str) -> Iterator[list[tuple[str, str]]]:
    received: list[tuple[str, str]] = []
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-sub-{uuid.uuid4().hex[:8]}")
    client.on_message = lambda c, u, m: received.append((m.topic, m.payload.decode()))
    client.on_subscribe = lambda c, u, mid, codes, props: subscribed.set()
    client.connect(*address)
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        assert subscribed.wait(10), "no SUBACK from the broker"
        yield received
    finally:
        client.disconnect()
        client.loop_stop()


async def test_a_red_alert_speaks_only_in_its_building(
        pg_dsn: str, db_schema: str, sink: LocalSink, mqtt_addr: tuple[str, int],
        run_id: str) -> None:
    host, port = mqtt_addr
    root = f"{run_id}/broadcast/sunshine"

    def zone(building: str) -> Receiver:
        return Receiver(name=f"speakers-{building}", channel="broadcast",
                        urls=(f"mqtt://{host}:{port}/{root}/{building}?qos=1",))
    base = settings_for(sink.port)
    settings = base.model_copy(update={"alerting": AlertingSettings(
        receivers=(zone("3"), zone("5")),
        groups=(RecipientGroup(name="public", recipients=(
            Recipient(name="zone-3", receivers=("speakers-3",), buildings=("3",)),
            Recipient(name="zone-5", receivers=("speakers-5",), buildings=("5",)))),),
        policies=(EscalationPolicy(name="loudspeakers", max_reminders=0, steps=(
            EscalationStep(groups=("public",), min_severity="red"),)),))})
    with listening(mqtt_addr, f"{root}/#") as heard:
        async with service(settings, pg_dsn, db_schema) as (run, db):
            await run.publish(gas(32.0))  # orange: no loudspeakers
            await run.publish(gas(55.0, Severity.RED))
            await eventually(lambda: _sent(db, 1), "the broadcast")

            async def arrived() -> bool:
                return len(heard) >= 1
            await eventually(arrived, "the message at the broadcast controller")
            await asyncio.sleep(0.3)
    [(topic, payload)] = heard
    assert topic == f"{root}/3"
    message = json.loads(payload)  # the structured message alone: no title in front
    assert message["text"].startswith("紧急通知：阳光小区3号楼2单元5层502室发生燃气泄漏。")
    assert message["zone"] == {"scope": "building", "site": "sunshine", "building": "3"}
    assert (message["priority"], message["severity"]) == (4, "red")

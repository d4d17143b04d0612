"""MqttSource's own receive path: plain, property-carrying, QoS 0 and very large PUBLISH
packets all arrive intact and in order, and acknowledged ones are not delivered again."""

from __future__ import annotations

import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest import MqttSource
from ingest.models import RawMessage

pytestmark = pytest.mark.integration


def _publish_v5(address: tuple[str, int], items: list[tuple[str, bytes, int, bool]]) -> None:
    """(topic, payload, qos, with_properties) in order, each waited for."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    client.connect(*address)
    client.loop_start()
    try:
        for topic, payload, qos, with_properties in items:
            props = None
            if with_properties:
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                props.UserProperty = ("origin", "test")
                props.ContentType = "application/json"
            client.publish(topic, payload, qos=qos, properties=props).wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()


async def _take(source: MqttSource, count: int, timeout_s: float = 30.0) -> list[RawMessage]:
    got: list[RawMessage] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        got += await source.take(10_000, 0.2)
    return got


async def test_every_packet_shape_arrives_intact_and_acks_stick(
        mqtt_addr: tuple[str, int], run_id: str) -> None:
    root = f"{run_id}/v1"
    big = b'{"values": {"lel": 1.0}, "pad": "' + b"x" * 600_000 + b'"}'  # spans many reads
    items = [(f"{root}/s/d-{n}/telemetry", b'{"n": %d}' % n, 1, False) for n in range(300)]
    items += [(f"{root}/s/props/telemetry", b'{"props": 1}', 1, True),
              (f"{root}/s/qos0/telemetry", b'{"qos": 0}', 0, False),
              (f"{root}/s/big/telemetry", big, 1, False),
              (f"{root}/s/\u5b88\u671b/telemetry", b"{}", 1, False),  # non-ASCII topic
              (f"{root}/s/empty/status", b"", 1, False)]
    client_id = f"{run_id}-src"
    async with MqttSource(host=mqtt_addr[0], port=mqtt_addr[1], client_id=client_id,
                          topic_root=root) as source:
        _publish_v5(mqtt_addr, items)
        got = await _take(source, len(items))
        assert [(m.topic, m.payload, m.qos) for m in got] == [(t, p, q) for t, p, q, _ in items]
        assert len({m.mid for m in got if m.qos == 1}) == len(items) - 1
        source.ack(got)
    # Same persistent session: everything was acknowledged, so nothing comes back.
    async with MqttSource(host=mqtt_addr[0], port=mqtt_addr[1], client_id=client_id,
                          topic_root=root) as source:
        _publish_v5(mqtt_addr, [(f"{root}/s/after/telemetry", b"{}", 1, False)])
        again = await _take(source, 1)
        assert [m.topic for m in again] == [f"{root}/s/after/telemetry"]
        source.ack(again)

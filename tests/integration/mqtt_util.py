"""A plain paho publisher for tests: publishes and waits for every PUBACK."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def publish_all(address: tuple[str, int], messages: Iterable[tuple[str, bytes]], *,
                qos: int = 1, retain: bool = False, timeout_s: float = 60.0) -> int:
    """Publish in order; return how many the broker acknowledged."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect(address[0], address[1])
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=qos, retain=retain)
                 for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout_s)
        return sum(1 for info in infos if info.is_published())
    finally:
        client.disconnect()
        client.loop_stop()

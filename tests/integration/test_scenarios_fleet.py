"""The load fleet against real Mosquitto: worker processes, counted acks, contract-clean."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from config.settings import load
from ingest.decoder import Decoder
from ingest.models import RawMessage
from simulators.fleet import FleetPlan, FleetRun, fleet_devices
from simulators.registry import write_registry

pytestmark = pytest.mark.integration


class _Collector:
    def __init__(self, address: tuple[str, int], topic_filter: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"test-fleet-{uuid.uuid4().hex[:8]}")
        self._client.on_connect = lambda client, *_: client.subscribe(topic_filter, qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(*address)
        self._client.loop_start()
        assert self._subscribed.wait(10), "no SUBACK"

    def _on_message(self, client: mqtt.Client, userdata: object,
                    message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def wait_for(self, count: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.messages)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def test_fleet_workers_publish_what_they_count_and_ingest_accepts_it(
        mqtt_addr: tuple[str, int], run_id: str, tmp_path: Path) -> None:
    site = "fleet-test"
    root = f"{run_id}/v1"
    plan = FleetPlan(site=site, devices=400, rate=800.0, seed=9, workers=2,
                     host=mqtt_addr[0], port=mqtt_addr[1], topic_root=root)
    registry = tmp_path / "fleet.yaml"
    write_registry(registry, {site: site},
                   fleet_devices(site, plan.devices, rate=plan.rate, seed=plan.seed))
    decoder = Decoder(load(registry).device_map(), topic_root=root)

    collector = _Collector(mqtt_addr, f"{root}/#")
    fleet = FleetRun(plan)
    try:
        fleet.start()
        deadline = time.monotonic() + 60
        while fleet.counters().acked < 1500:  # ~2 s of publishing, after process start-up
            assert time.monotonic() < deadline, fleet.counters()
            assert fleet.counters().errors == 0
            time.sleep(0.1)
    finally:
        fleet.stop()
        counters = fleet.counters()
        received = collector.wait_for(counters.acked, 20)
        collector.close()

    assert counters.errors == 0 and counters.workers_done == 2
    assert counters.acked == counters.handed
    assert received == counters.acked  # every acknowledged message arrived, no more
    devices = {topic.split("/")[-2] for topic, _ in collector.messages}
    assert len(devices) > 300  # both workers' slices, spread over the fleet
    rejects = [decoder.decode(RawMessage(topic=t, payload=p, received_at=time.time())).reject
               for t, p in collector.messages]
    assert [r for r in rejects if r is not None] == []

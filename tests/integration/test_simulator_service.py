"""The simulator against real Mosquitto: what it counts as published is what arrives."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from config.settings import Settings, load
from shouwang.catalog import EVENTS, DeviceType, metrics_for
from simulators import PublisherError, SimulatorService, publish_stream
from simulators.publisher import MqttPublisher

pytestmark = pytest.mark.integration


@dataclass(frozen=True, slots=True, kw_only=True)
class _Received:
    topic: str
    payload: bytes
    retain: bool


class _Subscriber:
    """A paho subscriber that records everything under one topic filter."""

    def __init__(self, address: tuple[str, int], topic_filter: str) -> None:
        self._address = address
        self._filter = topic_filter
        self._lock = threading.Lock()
        self._messages: list[_Received] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"test-sub-{uuid.uuid4().hex[:8]}",
                                   protocol=mqtt.MQTTv311)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, *args: object) -> None:
        client.subscribe(self._filter, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: object,
                    message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._messages.append(_Received(topic=message.topic, payload=bytes(message.payload),
                                            retain=bool(message.retain)))

    def __enter__(self) -> _Subscriber:
        self._client.connect(*self._address)
        self._client.loop_start()
        assert self._subscribed.wait(10), "no SUBACK"
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def messages(self) -> list[_Received]:
        with self._lock:
            return list(self._messages)

    def wait_for(self, count: int, timeout_s: float = 20.0) -> list[_Received]:
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # let duplicates or strays show up before we compare
        return self.messages


def _settings(site: str, *, speed: float, interval_s: float = 2.0) -> Settings:
    devices = [{"id": f"{site[:40]}-{t.value}-{i}", "type": t.value, "site": site,
                "report_interval_s": interval_s, "lat": 30.27, "lon": 120.15}
               for t in DeviceType for i in range(2)]
    return load(None, sites=[{"id": site, "name": "测试小区"}], devices=devices,
                simulator={"seed": 3, "speed": speed, "scenarios": [
                    {"scenario": "gas_leak", "device_id": f"{site[:40]}-gas-0",
                     "start_after_s": 10},
                    {"scenario": "sos", "device_id": f"{site[:40]}-wearable-1",
                     "start_after_s": 20}]})


def _clear_retained(address: tuple[str, int], topics: list[str]) -> None:
    """Leave the shared test broker as we found it: an empty retained payload deletes."""
    asyncio.run(publish_stream(*address, [(t, b"") for t in topics], retain=True))


async def _run_for(service: SimulatorService, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop), name="test.simulator")
    await asyncio.wait_for(service.started.wait(), 10)
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(task, 20)


async def test_every_counted_message_arrives_and_follows_the_contract(
        mqtt_addr: tuple[str, int], run_id: str) -> None:
    settings = _settings(run_id, speed=50.0)
    devices = settings.device_map()
    status_topics = [f"shouwang/v1/{run_id}/{d}/status" for d in devices]
    service = SimulatorService(settings, *mqtt_addr)
    try:
        with _Subscriber(mqtt_addr, f"shouwang/v1/{run_id}/#") as subscriber:
            await _run_for(service, 4.0)
            received = await asyncio.to_thread(subscriber.wait_for, service.messages_published)
    finally:
        await asyncio.to_thread(_clear_retained, mqtt_addr, status_topics)

    # 10 devices x 25 reports/s x ~4 s, plus 20 statuses and one SOS.
    assert service.messages_published > 700
    assert len(received) == service.messages_published

    by_channel: dict[str, list[tuple[str, bytes]]] = {}
    in_order: list[tuple[str, bytes]] = []  # telemetry and events as they arrived
    for message in received:
        root, version, site, device_id, channel = message.topic.split("/")
        assert (root, version, site) == ("shouwang", "v1", run_id)
        assert device_id in devices
        by_channel.setdefault(channel, []).append((device_id, message.payload))
        if channel != "status":
            in_order.append((device_id, message.payload))
    assert set(by_channel) == {"telemetry", "event", "status"}

    per_device: Counter[str] = Counter()
    readings = 0
    last_seq: dict[str, int] = {}
    peak_lel: dict[str, float] = {}
    for device_id, payload in in_order:
        body = orjson.loads(payload)
        per_device[device_id] += 1
        assert isinstance(body["ts"], float) and abs(body["ts"] - time.time()) < 60
        if "event" in body:
            assert set(body) == {"ts", "seq", "event"} and body["event"] in EVENTS
            readings += 1
        else:
            assert set(body) == {"ts", "seq", "values"}
            assert set(body["values"]) == {m.key for m in metrics_for(devices[device_id].type)}
            readings += len(body["values"])
            if "lel" in body["values"]:
                peak_lel[device_id] = max(peak_lel.get(device_id, 0.0), body["values"]["lel"])
        last_seq.setdefault(device_id, body["seq"] - 1)
        assert body["seq"] == last_seq[device_id] + 1, "seq gap or reorder"
        last_seq[device_id] = body["seq"]

    assert dict(per_device) == service.published_by_device
    assert readings == service.readings_published
    assert [orjson.loads(p)["event"] for _, p in by_channel["event"]] == ["sos"]
    gas_leak, quiet_gas = f"{run_id[:40]}-gas-0", f"{run_id[:40]}-gas-1"
    assert peak_lel[gas_leak] >= 50.0 > 2.0 >= peak_lel[quiet_gas]

    statuses: dict[str, list[bytes]] = {}
    for device_id, payload in by_channel["status"]:
        statuses.setdefault(device_id, []).append(payload)
    assert statuses == {d: [b"online", b"offline"] for d in devices}


@pytest.mark.parametrize("announce_offline", [True, False])
async def test_late_subscribers_see_the_retained_status(
        mqtt_addr: tuple[str, int], run_id: str, announce_offline: bool) -> None:
    settings = _settings(run_id, speed=10.0, interval_s=5.0)
    status_filter = f"shouwang/v1/{run_id}/+/status"
    devices = settings.device_map()
    # `shouwang run` stops its simulated site together with its own detectors, so there
    # the devices are not announced offline (announce_offline=False).
    service = SimulatorService(settings, *mqtt_addr, announce_offline=announce_offline)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop), name="test.simulator")
    try:
        await asyncio.wait_for(service.started.wait(), 10)
        with _Subscriber(mqtt_addr, status_filter) as late:
            during = await asyncio.to_thread(late.wait_for, len(devices), 10.0)
        stop.set()
        await asyncio.wait_for(task, 20)
        with _Subscriber(mqtt_addr, status_filter) as after:
            stopped = await asyncio.to_thread(after.wait_for, len(devices), 10.0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await asyncio.to_thread(_clear_retained, mqtt_addr,
                                [f"shouwang/v1/{run_id}/{d}/status" for d in devices])

    assert all(m.retain for m in during + stopped)
    assert sorted(m.topic.split("/")[3] for m in during) == sorted(devices)
    assert {m.payload for m in during} == {b"online"}
    assert sorted(m.topic.split("/")[3] for m in stopped) == sorted(devices)
    assert {m.payload for m in stopped} == ({b"offline"} if announce_offline else {b"online"})


async def test_publish_stream_counts_only_acknowledged_messages(
        mqtt_addr: tuple[str, int], run_id: str) -> None:
    topic = f"shouwang/v1/{run_id}/bench-1/telemetry"
    messages = [(topic, orjson.dumps({"seq": i, "values": {"lel": 1.0}})) for i in range(5000)]
    with _Subscriber(mqtt_addr, topic) as subscriber:
        acknowledged = await publish_stream(*mqtt_addr, messages)
        received = await asyncio.to_thread(subscriber.wait_for, len(messages))

    assert acknowledged == len(messages)
    assert [orjson.loads(m.payload)["seq"] for m in received] == list(range(5000))


async def test_publisher_waits_when_too_many_are_unacknowledged(
        mqtt_addr: tuple[str, int], run_id: str) -> None:
    topic = f"shouwang/v1/{run_id}/bench-2/telemetry"
    async with MqttPublisher(*mqtt_addr, max_inflight=10, max_pending=50) as publisher:
        highest = 0
        for i in range(2000):
            await publisher.publish(topic, b"%d" % i, key="bench-2", readings=1)
            highest = max(highest, publisher.pending)
        assert await publisher.flush(20)
    assert highest <= 50
    assert publisher.messages_acked == publisher.readings_acked == 2000
    assert publisher.acked_by_key() == {"bench-2": 2000}


async def test_unreachable_broker_is_our_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before we connect: nobody listens
    with pytest.raises(PublisherError, match=f"127.0.0.1:{port}"):
        async with MqttPublisher("127.0.0.1", port):
            pass

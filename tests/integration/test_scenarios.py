"""The scenario library through the real pipeline: Mosquitto, ingest, detectors, alerting, DB.

A scenario's simulated half hour (or day) is produced ahead, stamped with recent device
clocks, and published at once: the pipeline sees what live devices would have sent, in a
few seconds. The bus has one partition, so the pipeline handles messages in the order
they were published; a final SOS from a sentinel wearable proves everything before it
went all the way through, so "no alert" is checked after the fact, not guessed by a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence

import pytest

from alerting.service import AlertingService
from config.settings import Settings, load
from detectors.service import DetectorService
from ingest import DatabaseHop
from shouwang.bus import MemoryBus
from shouwang.catalog import DeviceType
from shouwang.models import Device, Location
from shouwang.store import ReadingStore, connect
from shouwang.wiring import ServiceRunner, ingest_service, mqtt_source, prepare_store
from simulators import (
    Community,
    Duplicated,
    FaultInjector,
    FaultRun,
    Malformed,
    MqttPublisher,
    OutgoingMessage,
    Reordered,
)
from simulators.payloads import Channel, encode_event, topic_for
from simulators.registry import registry_config
from simulators.testbed import hazard_testbed, nuisance_testbed
from tests.integration.e2e import eventually

pytestmark = pytest.mark.integration

SITE = "scenario-site"
SENTINEL = Device(id="sentinel-wearable", type=DeviceType.WEARABLE, site=SITE,
                  location=Location(building="0号楼"), report_interval_s=3600.0)
DAY = 86_400.0
CST = 8 * 3600.0


def _settings(pg_dsn: str, schema: str, mqtt_addr: tuple[str, int], run_id: str,
              devices: Sequence[Device]) -> Settings:
    registry = registry_config({SITE: "情景演练小区"}, [*devices, SENTINEL])
    return load(None, **registry, database={"dsn": pg_dsn, "schema_name": schema},
                mqtt={"host": mqtt_addr[0], "port": mqtt_addr[1],
                      "client_id": f"{run_id}-ingest", "topic_root": f"{run_id}/v1"},
                bus={"partitions": 1}, simulator={"enabled": False})


@contextlib.asynccontextmanager
async def pipeline(settings: Settings, pg_dsn: str) -> AsyncIterator[None]:
    stop = asyncio.Event()
    schema = settings.database.schema_name
    await prepare_store(pg_dsn, settings)
    async with MemoryBus(partitions=1) as bus, ReadingStore(pg_dsn, schema) as store, \
            mqtt_source(settings, settings.mqtt.host or "", settings.mqtt.port) as source:
        runner = ServiceRunner(stop)
        runner.add("ingest", ingest_service(settings, source, DatabaseHop(store, bus)).run)
        runner.add("detectors", DetectorService(settings, bus).run)
        runner.add("alerting", AlertingService(settings, bus, pg_dsn, schema=schema).run)
        running = asyncio.create_task(runner.run(), name="test.pipeline")
        try:
            yield
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)


async def _publish(mqtt_addr: tuple[str, int], root: str,
                   messages: Sequence[OutgoingMessage]) -> list[str]:
    """Publish in order, then the sentinel's SOS; returns the retained topics used."""
    sentinel = (topic_for(root, SITE, SENTINEL.id, Channel.EVENT),
                encode_event(ts=time.time(), seq=1, event="sos"))
    async with MqttPublisher(*mqtt_addr) as publisher:
        for m in messages:
            await publisher.publish(m.topic, m.payload, retain=m.retain)
        await publisher.publish(*sentinel)
        assert await publisher.flush(60.0)
        assert publisher.messages_acked == len(messages) + 1
    return [m.topic for m in messages if m.retain]


async def _clear_retained(mqtt_addr: tuple[str, int], topics: Sequence[str]) -> None:
    async with MqttPublisher(*mqtt_addr) as publisher:
        for topic in topics:
            await publisher.publish(topic, b"", retain=True)
        await publisher.flush(30.0)


async def _rows(pg_dsn: str, schema: str, query: str) -> list[tuple[object, ...]]:
    conn = await connect(pg_dsn, schema, autocommit=True)
    try:
        cur = await conn.execute(query)
        return list(await cur.fetchall())
    finally:
        await conn.close()


async def _sentinel_through(pg_dsn: str, schema: str) -> None:
    async def arrived() -> bool:
        return bool(await _rows(pg_dsn, schema, "SELECT id FROM alerts WHERE device_id = "
                                f"'{SENTINEL.id}' AND hazard = 'sos'"))

    await eventually(arrived, 90, "the sentinel's SOS alert (everything before it processed)")


async def test_every_hazard_scenario_raises_its_alert_at_its_device(
        pg_dsn: str, db_schema: str, mqtt_addr: tuple[str, int], run_id: str) -> None:
    devices, runs = hazard_testbed(SITE)
    settings = _settings(pg_dsn, db_schema, mqtt_addr, run_id, devices)
    span_s = 2400.0
    community = Community(devices, seed=21, epoch0=time.time() - span_s, runs=runs,
                          topic_root=settings.mqtt.topic_root)
    truth = community.ground_truth()
    # Bystanders also suffer QoS 1 redelivery, reordering and the odd broken payload.
    injector = FaultInjector([FaultRun(fault=f, device_id=f"bystander-{kind.value}")
                              for kind in DeviceType
                              for f in (Duplicated(share=0.2), Reordered(share=0.2),
                                        Malformed(share=0.05))], seed=21)
    messages = injector.apply(community.due(span_s)) + injector.release()
    retained: list[str] = []
    try:
        async with pipeline(settings, pg_dsn):
            retained = await _publish(mqtt_addr, settings.mqtt.topic_root, messages)
            await _sentinel_through(pg_dsn, db_schema)

            expected = {(t.device_id, t.hazard): int(t.severity) for t in truth}

            async def all_raised() -> bool:
                rows = await _rows(pg_dsn, db_schema,
                                   "SELECT device_id, hazard, max(severity) FROM alerts "
                                   "GROUP BY device_id, hazard")
                found = {(str(d), str(h)): s for d, h, s in rows}
                return all(found.get(key) == level for key, level in expected.items())

            await eventually(all_raised, 60, f"an alert per ground truth {sorted(expected)}")
    finally:
        await _clear_retained(mqtt_addr, retained)

    alerts = await _rows(pg_dsn, db_schema, "SELECT a.device_id, a.hazard, a.kind, a.severity, "
                         "a.drill, d.building FROM alerts a JOIN devices d ON d.id = a.device_id")
    scenario_devices = {device for device, _ in expected} | {SENTINEL.id}
    # Bystanders, faults and all, raise no hazard. (Health findings are fair: the replay's
    # early device clocks lag receipt by up to 40 min, and faults break seq order.)
    unexpected = [a for a in alerts if a[0] not in scenario_devices and a[2] == "hazard"]
    assert unexpected == []
    primary = {(str(a[0]), str(a[1])) for a in alerts
               if a[1] in {h for _, h in expected} and a[0] != SENTINEL.id}
    assert primary == set(expected)  # no hazard at the wrong one of the scenario devices
    places = {str(a[0]): a[5] for a in alerts}
    buildings = {d.id: d.location.building for d in devices}
    assert places["kitchen-fire"] == buildings["kitchen-fire"]
    assert places["outage-water"] == buildings["outage-water"] == "90号楼"
    rejects = await _rows(pg_dsn, db_schema, "SELECT count(*) FROM rejects")
    assert rejects[0][0] == injector.malformed > 0


async def test_the_nuisance_day_raises_no_hazard_alert(
        pg_dsn: str, db_schema: str, mqtt_addr: tuple[str, int], run_id: str) -> None:
    devices, runs = nuisance_testbed(SITE)
    settings = _settings(pg_dsn, db_schema, mqtt_addr, run_id, devices)
    # Yesterday's local midnight: the devices' own day lines up with the nuisance schedule.
    midnight = (time.time() + CST) // DAY * DAY - CST - DAY
    community = Community(devices, seed=8, epoch0=midnight, runs=runs,
                          topic_root=settings.mqtt.topic_root)
    messages = community.due(DAY)
    readings = sum(m.readings for m in messages)
    async with pipeline(settings, pg_dsn):
        await _publish(mqtt_addr, settings.mqtt.topic_root, messages)
        await _sentinel_through(pg_dsn, db_schema)

    landed = await _rows(pg_dsn, db_schema, "SELECT count(*) FROM readings WHERE device_id "
                         f"<> '{SENTINEL.id}'")
    assert landed[0][0] == readings
    peaks = dict(await _rows(pg_dsn, db_schema, "SELECT metric, max(value) FROM readings "
                             "WHERE metric IN ('co', 'smoke', 'level') GROUP BY metric"))
    assert peaks["co"] > 25 and peaks["smoke"] > 1.5 and peaks["level"] > 0.15  # it happened
    alerts = await _rows(pg_dsn, db_schema, "SELECT device_id, hazard, kind FROM alerts "
                         f"WHERE kind = 'hazard' AND device_id <> '{SENTINEL.id}'")
    assert alerts == []

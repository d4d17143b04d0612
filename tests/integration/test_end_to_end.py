"""The whole pipeline over real Mosquitto, Kafka and PostgreSQL: a gas leak among normal devices."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from alerting.service import AlertingService
from config.settings import Settings, load
from console.service import ConsoleService
from console.users import Role
from detectors.service import DetectorService
from ingest import KafkaHop, StoreWriterService
from shouwang.bus.kafka import KafkaBus
from shouwang.sink import LocalSink
from shouwang.store import ReadingStore, connect
from shouwang.wiring import ServiceRunner, ingest_service, mqtt_source, prepare_store
from tests.integration.console_auth import add_user, log_in
from tests.integration.db_query import db_scalar
from tests.integration.e2e import LEAK_DEVICE, community, eventually, services_running, stream
from tests.integration.local_servers import running_sink
from tests.integration.mqtt_util import publish_all

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    settings: Settings
    sink: LocalSink
    console: ConsoleService


@contextlib.asynccontextmanager
async def scale_out_stack(pg_dsn: str, schema: str, mqtt_addr: tuple[str, int],
                          kafka: str, run_id: str) -> AsyncIterator[Stack]:
    stop = asyncio.Event()
    async with running_sink() as sink:
        settings = load(None, **community(sink.port),
                        database={"dsn": pg_dsn, "schema_name": schema},
                        mqtt={"host": mqtt_addr[0], "port": mqtt_addr[1],
                              "client_id": f"{run_id}-ingest", "topic_root": f"{run_id}/v1"},
                        bus={"kind": "kafka", "kafka_bootstrap": kafka,
                             "topic_prefix": f"{run_id}."},
                        detectors={"offline_check_s": 1.0},
                        console={"host": "127.0.0.1", "port": 0})
        await prepare_store(pg_dsn, settings)
        async with KafkaBus(kafka, topic_prefix=f"{run_id}.") as bus, \
                ReadingStore(pg_dsn, schema) as store, \
                mqtt_source(settings, *mqtt_addr) as source:
            console = ConsoleService(settings, bus, pg_dsn, schema=schema)
            runner = ServiceRunner(stop)
            runner.add("ingest", ingest_service(settings, source, KafkaHop(bus)).run)
            runner.add("store-writer",
                       StoreWriterService(bus, store, group="store-writer").run)
            runner.add("detectors", DetectorService(settings, bus).run)
            runner.add("alerting", AlertingService(settings, bus, pg_dsn, schema=schema).run)
            runner.add("console", console.run)
            async with services_running(runner, stop, "test.stack"):
                await asyncio.wait_for(console.ready.wait(), 20)
                yield Stack(settings, sink, console)


async def test_gas_leak_end_to_end_over_kafka(
        pg_dsn: str, db_schema: str, mqtt_addr: tuple[str, int], kafka_bootstrap: str,
        run_id: str) -> None:
    async with scale_out_stack(pg_dsn, db_schema, mqtt_addr, kafka_bootstrap, run_id) as stack:
        messages, readings = stream(f"{run_id}/v1", community(0))
        assert publish_all(mqtt_addr, messages) == len(messages)

        async def all_landed() -> bool:
            landed: int = await db_scalar(pg_dsn, db_schema, "SELECT count(*) FROM readings")
            return landed == readings

        await eventually(all_landed, 60, "every published reading in the database")

        async def both_sent() -> bool:
            return bool(stack.sink.received("sms")) and bool(stack.sink.received("broadcast"))

        await eventually(both_sent, 30, "an SMS and a broadcast at the sink")
        await asyncio.sleep(1.5)  # a duplicate would arrive now
        assert len(stack.sink.received("sms")) == 1
        assert len(stack.sink.received("broadcast")) == 1
        assert "301" in stack.sink.received("sms")[0].body

        alerts = await db_scalar(pg_dsn, db_schema, "SELECT count(*) FROM alerts")
        live = await db_scalar(pg_dsn, db_schema,
                               "SELECT count(*) FROM alerts WHERE device_id = %s AND hazard = "
                               "'gas' AND status = 'open'", LEAK_DEVICE)
        assert (alerts, live) == (1, 1)
        assert await db_scalar(pg_dsn, db_schema, "SELECT severity FROM alerts") == 4  # red

        db = await connect(pg_dsn, db_schema, autocommit=True)
        try:
            await add_user(db, "fire-station-2", Role.FIRE_STATION, ("sunshine",))
        finally:
            await db.close()
        async with httpx.AsyncClient(base_url=stack.console.url, timeout=10) as client:
            await log_in(client, "fire-station-2")
            listed = (await client.get("/api/alerts", params={"status": "open"})).json()
            assert [a["device_id"] for a in listed] == [LEAK_DEVICE]
            alert_id = listed[0]["id"]
            response = await client.post(f"/api/alerts/{alert_id}/ack",
                                         json={"actor": "fire-station-2", "note": "on our way"})
            assert response.status_code == 200
        assert await db_scalar(pg_dsn, db_schema, "SELECT status FROM alerts WHERE id = %s",
                               alert_id) == "acknowledged"
        assert await db_scalar(pg_dsn, db_schema,
                               "SELECT count(*) FROM alert_events WHERE alert_id = %s AND "
                               "to_status = 'acknowledged' AND actor = 'fire-station-2'",
                               alert_id) == 1

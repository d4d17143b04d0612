"""Wiring: which database, broker and bus a process uses, and how its services run together.

Each piece picks the embedded default when nothing is configured: a pip-installed
PostgreSQL when no DSN is set, an embedded MQTT broker when no broker is set, the
in-process bus unless Kafka is chosen.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from config.settings import Settings
from ingest import DurableHop, IngestService, MqttSource
from ingest.quarantine_store import QuarantineStore
from shouwang.audit import local_actor, record_config
from shouwang.bus import Bus, MemoryBus
from shouwang.bus.kafka import KafkaBus
from shouwang.embedded import EmbeddedBroker, EmbeddedPostgres
from shouwang.store import connect, migrate
from shouwang.store.registry import sync_registry

__all__ = [
    "ServiceRunner",
    "building_keys",
    "ingest_service",
    "mqtt_broker",
    "mqtt_source",
    "open_bus",
    "postgres",
    "prepare_store",
]

log = logging.getLogger(__name__)


@asynccontextmanager
async def postgres(settings: Settings) -> AsyncIterator[str]:
    """The configured DSN, or an embedded server's while the context is open."""
    if settings.database.dsn:
        yield settings.database.dsn
        return
    async with EmbeddedPostgres(settings.database.data_dir, settings.database.port) as pg:
        log.info("embedded PostgreSQL ready port=%d data_dir=%s", pg.port, pg.data_dir)
        yield pg.dsn


@asynccontextmanager
async def mqtt_broker(settings: Settings) -> AsyncIterator[tuple[str, int]]:
    """The configured broker, or an embedded one on 127.0.0.1:``mqtt.port``."""
    if settings.mqtt.host:
        yield settings.mqtt.host, settings.mqtt.port
        return
    async with EmbeddedBroker("127.0.0.1", settings.mqtt.port,
                              data_dir=settings.mqtt.data_dir) as broker:
        log.info("embedded MQTT broker ready kind=%s port=%d", broker.kind, broker.port)
        yield broker.host, broker.port


def building_keys(settings: Settings) -> dict[str, str]:
    """Device id -> its building's partition key (devices with no building keep their own).

    Correlation (smoke and heat in a room, gas alarms across a building, a building going
    offline) and drift against neighbours compare one building's devices, so one detector
    worker must own all of them; one device's readings stay in order either way.
    """
    return {d.id: f"{d.site}/{d.location.building}"
            for d in settings.device_map().values() if d.location.building}


def open_bus(settings: Settings) -> Bus:
    colocate = building_keys(settings)
    if settings.bus.kind == "kafka":
        return KafkaBus(settings.bus.kafka_bootstrap, topic_prefix=settings.bus.topic_prefix,
                        partitions=settings.bus.partitions, colocate=colocate)
    return MemoryBus(partitions=settings.bus.partitions, colocate=colocate)


async def prepare_store(dsn: str, settings: Settings) -> None:
    """Migrate the schema and mirror the configured sites and devices into it."""
    schema = settings.database.schema_name
    conn = await connect(dsn, schema)
    try:
        await migrate(conn, schema)
        await sync_registry(conn, settings.site_map().values(), settings.device_map().values())
        # Every start records the effective config when it changed (the audit trail).
        await record_config(conn, settings, actor=local_actor(), now=time.time(),
                            command=" ".join(sys.argv[1:2]))
        await conn.commit()
    finally:
        await conn.close()


class ServiceRunner:
    """Runs named service coroutines together; the first failure stops them all."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self._services: list[tuple[str, Callable[[asyncio.Event], Coroutine[Any, Any, None]]]] = []

    def add(self, name: str,
            run: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
        self._services.append((name, run))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for name, run in self._services:
                group.create_task(self._guard(name, run), name=name)

    async def _guard(self, name: str,
                     run: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
        try:
            await run(self._stop)
        except Exception:
            log.exception("service failed service=%s; stopping the others", name)
            self._stop.set()
            raise
        if not self._stop.is_set():
            log.error("service ended on its own service=%s; stopping the others", name)
            self._stop.set()


def mqtt_source(settings: Settings, host: str, port: int) -> MqttSource:
    m = settings.mqtt
    client_id = m.client_id.replace("{hostname}", socket.gethostname())
    return MqttSource(host=host, port=port, client_id=client_id, topic_root=m.topic_root,
                      share_group=m.share_group, username=m.username,
                      password=m.password.get_secret_value() if m.password else None)


def ingest_service(settings: Settings, source: MqttSource, hop: DurableHop, *,
                   dsn: str | None = None) -> IngestService:
    """``dsn``: where quarantines of flooding devices are kept (unset: in memory only)."""
    i = settings.ingest
    quarantine = QuarantineStore(dsn, settings.database.schema_name) if dsn else None
    return IngestService(source, hop, settings.device_map(), topic_root=settings.mqtt.topic_root,
                         max_payload_bytes=i.max_payload_bytes,
                         max_readings_per_message=i.max_readings_per_message,
                         batch_max_messages=i.batch_max_messages, flush_ms=i.flush_ms,
                         flood=i.flood, stale_after_s=i.stale_after_s,
                         quarantine_store=quarantine)

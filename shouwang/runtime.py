"""The embedded default, ``shouwang run``: the whole stack and a simulated community."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from alerting.service import AlertingService
from config.settings import Settings
from console.service import ConsoleService
from detectors.service import DetectorService
from ingest import DatabaseHop, KafkaHop, StoreWriterService
from shouwang.privacy import HealthRetentionService
from shouwang.sink import LocalSink
from shouwang.store import ReadingStore
from shouwang.wiring import (
    ServiceRunner,
    ingest_service,
    mqtt_broker,
    mqtt_source,
    open_bus,
    postgres,
    prepare_store,
)
from simulators.service import SimulatorService

__all__ = ["run_all"]

log = logging.getLogger(__name__)


async def run_all(settings: Settings, stop: asyncio.Event, *,
                  on_ready: Callable[[dict[str, Any]], None] | None = None) -> None:
    """The whole stack in one process (``shouwang run``)."""
    schema = settings.database.schema_name
    async with AsyncExitStack() as stack:
        dsn = await stack.enter_async_context(postgres(settings))
        host, port = await stack.enter_async_context(mqtt_broker(settings))
        bus = await stack.enter_async_context(open_bus(settings))
        await prepare_store(dsn, settings)
        store = await stack.enter_async_context(ReadingStore(dsn, schema))
        source = await stack.enter_async_context(mqtt_source(settings, host, port))
        kafka = settings.bus.kind == "kafka"
        runner = ServiceRunner(stop)
        runner.add("ingest", ingest_service(
            settings, source, KafkaHop(bus) if kafka else DatabaseHop(store, bus), dsn=dsn).run)
        if kafka:
            runner.add("store-writer", StoreWriterService(bus, store).run)
        runner.add("detectors", DetectorService(settings, bus, dsn=dsn, schema=schema).run)
        runner.add("alerting", AlertingService(settings, bus, dsn, schema=schema).run)
        runner.add("health-retention", HealthRetentionService(settings, dsn, schema=schema).run)
        console = ConsoleService(settings, bus, dsn, schema=schema)
        runner.add("console", console.run)
        if settings.sink.enabled:
            sink = LocalSink(settings.sink.host, settings.sink.port,
                             record_file=Path(settings.database.data_dir).parent / "sink.jsonl")
            runner.add("sink", sink.run)
        if settings.simulator.enabled:
            # The simulated site stops with the system: announcing every device offline to
            # our own detectors would leave a power-outage alert behind for the next start.
            runner.add("simulator", SimulatorService(settings, host, port,
                                                     announce_offline=False).run)
        if on_ready is not None:
            on_ready({"dsn": dsn, "mqtt": (host, port)})
        log.info("shouwang running: console http://%s:%d mqtt %s:%d", settings.console.host,
                 settings.console.port, host, port)
        await runner.run()

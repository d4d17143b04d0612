"""The ``shouwang`` command: one entry point per service, plus the all-in-one ``run``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import start_http_server

from config.settings import ConfigError, Settings, load

__all__ = ["main"]

log = logging.getLogger("shouwang")

_REPO = Path(__file__).resolve().parent.parent
_SERVICES_SCRIPT = _REPO / "scripts" / "services.sh"

Command = Callable[[Settings, argparse.Namespace, asyncio.Event], Coroutine[Any, Any, None]]


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()), stream=sys.stderr,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    for noisy in ("aiokafka", "kafka", "uvicorn.error", "apprise", "amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


async def _run_until_signal(command: Command, settings: Settings,
                            args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await command(settings, args, stop)


async def _cmd_run(settings: Settings, args: argparse.Namespace, stop: asyncio.Event) -> None:
    from shouwang.runtime import run_all

    await run_all(settings, stop)


async def _cmd_ingest(settings: Settings, args: argparse.Namespace, stop: asyncio.Event) -> None:
    from ingest import DatabaseHop, KafkaHop, StoreWriterService
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

    kafka = settings.bus.kind == "kafka"
    async with postgres(settings) as dsn, open_bus(settings) as bus:
        await prepare_store(dsn, settings)
        async with ReadingStore(dsn, settings.database.schema_name) as store:
            runner = ServiceRunner(stop)
            if kafka and args.role in ("writer", "both"):
                runner.add("store-writer", StoreWriterService(bus, store).run)
            if args.role in ("mqtt", "both"):
                async with mqtt_broker(settings) as (host, port), \
                        mqtt_source(settings, host, port) as source:
                    hop = KafkaHop(bus) if kafka else DatabaseHop(store, bus)
                    runner.add("ingest", ingest_service(settings, source, hop).run)
                    await runner.run()
                    return
            await runner.run()


async def _cmd_detect(settings: Settings, args: argparse.Namespace, stop: asyncio.Event) -> None:
    from detectors.service import DetectorService
    from shouwang.wiring import open_bus

    async with open_bus(settings) as bus:
        await DetectorService(settings, bus).run(stop)


async def _cmd_alert(settings: Settings, args: argparse.Namespace, stop: asyncio.Event) -> None:
    from alerting.service import AlertingService
    from shouwang.wiring import open_bus, postgres, prepare_store

    async with postgres(settings) as dsn, open_bus(settings) as bus:
        await prepare_store(dsn, settings)
        await AlertingService(settings, bus, dsn, schema=settings.database.schema_name).run(stop)


async def _cmd_console(settings: Settings, args: argparse.Namespace, stop: asyncio.Event) -> None:
    from console.service import ConsoleService
    from shouwang.wiring import open_bus, postgres, prepare_store

    async with postgres(settings) as dsn, open_bus(settings) as bus:
        await prepare_store(dsn, settings)
        await ConsoleService(settings, bus, dsn, schema=settings.database.schema_name).run(stop)


async def _cmd_simulate(settings: Settings, args: argparse.Namespace,
                        stop: asyncio.Event) -> None:
    from shouwang.wiring import mqtt_broker
    from simulators.service import SimulatorService

    async with mqtt_broker(settings) as (host, port):
        await SimulatorService(settings, host, port).run(stop)


async def _cmd_sink(settings: Settings, args: argparse.Namespace, stop: asyncio.Event) -> None:
    from shouwang.sink import LocalSink

    await LocalSink(settings.sink.host, settings.sink.port,
                    record_file=Path(args.record) if args.record else None).run(stop)


async def _cmd_migrate(settings: Settings, args: argparse.Namespace,
                       stop: asyncio.Event) -> None:
    from shouwang.wiring import postgres, prepare_store

    async with postgres(settings) as dsn:
        await prepare_store(dsn, settings)


def _cmd_services(args: argparse.Namespace) -> int:
    if not _SERVICES_SCRIPT.exists():
        log.error("services script not found at %s", _SERVICES_SCRIPT)
        return 2
    return subprocess.call(["bash", str(_SERVICES_SCRIPT), args.action])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shouwang",
        description="守望 Shouwang: IoT emergency monitoring and early warning for communities.")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(name: str, help_text: str, command: Command) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", type=Path, default=None,
                       help="YAML config file (SHOUWANG_* environment variables override it)")
        p.set_defaults(command_fn=command)
        return p

    with_config("run", "run everything in one process: embedded database and broker unless "
                "configured, in-process bus, simulated community, console", _cmd_run)
    ingest = with_config("ingest", "MQTT ingestor and store writer", _cmd_ingest)
    ingest.add_argument("--role", choices=["mqtt", "writer", "both"], default="both",
                        help="mqtt: MQTT to bus; writer: bus to database (Kafka only)")
    with_config("detect", "detector worker: readings in, detections out", _cmd_detect)
    with_config("alert", "alerting service: detections to alerts and notifications",
                _cmd_alert)
    with_config("console", "web console for duty officers and fire stations", _cmd_console)
    with_config("simulate", "simulated community of devices publishing over MQTT",
                _cmd_simulate)
    sink = with_config("sink", "local stand-in for SMS/broadcast providers (records messages)",
                       _cmd_sink)
    sink.add_argument("--record", default=None, help="append received messages to this file")
    with_config("migrate", "create or upgrade the database schema and sync the registry",
                _cmd_migrate)
    services = sub.add_parser("services", help="install/start/stop the local real services "
                              "(PostgreSQL, Mosquitto, Kafka) used by the tests",
                              description="Install, start, stop or show the local services.")
    services.add_argument("action", choices=["install", "start", "stop", "status"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(args.log_level)
    if args.command == "services":
        return _cmd_services(args)
    try:
        settings = load(args.config)
    except ConfigError as err:
        print(f"shouwang: {err}", file=sys.stderr)  # the operator must see why it stopped
        return 2
    if settings.metrics.port:
        # Scraped by Prometheus; every service's counters live in this process's registry.
        start_http_server(settings.metrics.port, addr=settings.metrics.host)
    try:
        asyncio.run(_run_until_signal(args.command_fn, settings, args))
    except KeyboardInterrupt:
        pass
    except Exception as err:  # report, don't dump a traceback on the operator
        log.error("shouwang %s failed: %s", args.command, err, exc_info=log.isEnabledFor(
            logging.DEBUG))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The scale-out pipeline for Kafka-path fault tests, and the counts it is judged by.

Ingest (MQTT to Kafka) and the store writer (Kafka to PostgreSQL) run as real
``shouwang ingest --role mqtt|writer`` processes, so a test can SIGKILL one and read its
memory. Detectors and alerting run in the test's event loop, unless the test asks for the
detector worker (``shouwang detect``) or the console (``shouwang console``) as a child
process to kill. The SMS and loudspeaker channels deliver to a local HTTP sink that counts
what arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from paho.mqtt import publish

from alerting.service import AlertingService
from config.settings import Settings, load
from detectors.service import DetectorService
from shouwang.bus.kafka import KafkaBus
from shouwang.sink import LocalSink
from shouwang.store import connect
from shouwang.wiring import ServiceRunner, prepare_store
from tests.faults.fleet import GHOST, LEAK_DEVICE, QUIET_DEVICES, SITE, Published
from tests.integration.e2e import SINK_RECEIVERS, sink_alerting

__all__ = ["Counts", "ServiceProcess", "Stack", "assert_exact", "console_healthy", "count",
           "landed_readings", "pipeline", "scalar", "settle", "until"]

log = logging.getLogger(__name__)

_ROOT = Path(__file__).resolve().parents[2]
# One red gas alert for the leaking detector, sent once to each of these receivers.
RECEIVERS = SINK_RECEIVERS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config(sink_port: int, *, dsn: str, schema: str, mqtt_port: int, kafka: str,
            run_id: str, console_port: int) -> dict[str, Any]:  # Any: YAML-shaped settings
    devices = [{"id": d, "type": "gas", "site": SITE, "building": "1号楼",
                "report_interval_s": 600} for d in QUIET_DEVICES]
    devices.append({"id": LEAK_DEVICE, "type": "gas", "site": SITE, "building": "2号楼",
                    "unit": "1单元", "floor": "3", "room": "301", "report_interval_s": 600})
    return {
        "database": {"dsn": dsn, "schema_name": schema},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "client_id": f"{run_id}-ingest",
                 "topic_root": f"{run_id}/v1"},
        "bus": {"kind": "kafka", "kafka_bootstrap": kafka, "topic_prefix": f"{run_id}.",
                "partitions": 2},
        # The fleet sends 10 messages/s a device (100 in the burst) against a 600 s report
        # interval: the flood guard stays on, with a floor above that.
        "ingest": {"flush_ms": 20, "batch_max_messages": 2000,
                   "flood": {"min_rate_per_s": 200.0}},
        # Snapshots each second: a killed detector worker restarts from a recent state.
        "detectors": {"offline_check_s": 1.0, "snapshot_interval_s": 1.0},
        "console": {"host": "127.0.0.1", "port": console_port},
        "sites": [{"id": SITE, "name": "阳光小区"}],
        "devices": devices,
        "alerting": sink_alerting(sink_port, ["gas"]),
    }


class ServiceProcess:
    """``shouwang COMMAND...`` (e.g. ``ingest --role mqtt``) as a child process, logging to
    ``log``."""

    def __init__(self, config: Path, command: list[str], log: Path) -> None:
        self._argv = [sys.executable, "-m", "shouwang.cli", *command, "--config", str(config)]
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as out:
            self.process = subprocess.Popen(self._argv, stdout=out, stderr=subprocess.STDOUT,
                                            cwd=_ROOT, env={**os.environ})

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def rss_kib(self) -> int:
        """Resident set size now, from /proc (KiB)."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self, *, kill: bool = False) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def tail(self) -> str:
        return self._log.read_text(errors="replace")[-3000:] if self._log.exists() else ""


@dataclass
class Stack:
    settings: Settings
    dsn: str
    schema: str
    sink: LocalSink
    ingest: ServiceProcess
    writer: ServiceProcess
    detector: ServiceProcess | None = None
    console: ServiceProcess | None = None
    console_url: str = ""
    # Channel-fault tests: more far ends than ``sink`` (a failing SMS provider), and the
    # messages their alerting config should deliver.
    far_ends: tuple[LocalSink, ...] = ()
    messages_expected: int = len(RECEIVERS)

    def children(self) -> list[ServiceProcess]:
        return [p for p in (self.ingest, self.writer, self.detector, self.console)
                if p is not None]


@contextlib.asynccontextmanager
async def pipeline(directory: Path, *, dsn: str, schema: str, mqtt_port: int, kafka: str,
                   run_id: str, detector_process: bool = False,
                   console_process: bool = False,
                   alerting: Callable[[int], dict[str, Any]] | None = None,
                   far_ends: Sequence[LocalSink] = (),
                   messages_expected: int = len(RECEIVERS)) -> AsyncIterator[Stack]:
    """``alerting``, given the sink's port, replaces the alerting section (one SMS and one
    loudspeaker message by default); messages at ``far_ends`` count as delivered too."""
    stop = asyncio.Event()
    sink = LocalSink("127.0.0.1", 0)
    sink_task = asyncio.create_task(sink.run(stop), name="test.sink")
    await asyncio.wait_for(sink.ready.wait(), 10)
    console_port = _free_port()
    shaped = _config(sink.port, dsn=dsn, schema=schema, mqtt_port=mqtt_port, kafka=kafka,
                     run_id=run_id, console_port=console_port)
    if alerting is not None:
        shaped["alerting"] = alerting(sink.port)
    # The console writes the first admin's password beside data_dir: here, not in the
    # repository's .shouwang/ where a real quick start keeps its own.
    shaped["database"]["data_dir"] = str(directory / "pg")
    config = directory / "shouwang.yaml"
    config.write_text(yaml.safe_dump(shaped, allow_unicode=True))
    settings = load(None, **shaped)
    await prepare_store(dsn, settings)
    stack = Stack(settings, dsn, schema, sink,
                  ingest=ServiceProcess(config, ["ingest", "--role", "mqtt"],
                                        directory / "ingest.log"),
                  writer=ServiceProcess(config, ["ingest", "--role", "writer"],
                                        directory / "writer.log"),
                  detector=(ServiceProcess(config, ["detect"], directory / "detect.log")
                            if detector_process else None),
                  console=(ServiceProcess(config, ["console"], directory / "console.log")
                           if console_process else None),
                  console_url=f"http://127.0.0.1:{console_port}", far_ends=tuple(far_ends),
                  messages_expected=messages_expected)
    try:
        # The child processes first: their start-up overlaps the in-process services'.
        for child in stack.children():
            child.start()
        async with KafkaBus(kafka, topic_prefix=f"{run_id}.", partitions=2) as bus:
            runner = ServiceRunner(stop)
            if not detector_process:
                runner.add("detectors", DetectorService(settings, bus).run)
            runner.add("alerting", AlertingService(settings, bus, dsn, schema=schema).run)
            running = asyncio.create_task(runner.run(), name="test.stack")
            await _ready(dsn, schema, mqtt_port, f"{run_id}/v1", stack)
            try:
                yield stack
            finally:
                stop.set()
                await running
    finally:
        for child in stack.children():
            child.stop()
        stop.set()
        await sink_task


async def _ready(dsn: str, schema: str, mqtt_port: int, root: str, stack: Stack,
                 timeout_s: float = 60.0) -> None:
    """Until a status message has gone MQTT -> ingest -> Kafka -> writer -> PostgreSQL:
    load sent before ingest subscribes would never reach it (nobody to queue it for).
    A console child must answer its health check too."""
    deadline = time.monotonic() + timeout_s
    while not await scalar(dsn, schema, "SELECT count(*) FROM readings WHERE metric = 'online'"):
        for child in stack.children():
            assert child.alive(), child.tail()
        assert time.monotonic() < deadline, "the pipeline never came up"
        await asyncio.to_thread(publish.single, f"{root}/{SITE}/{QUIET_DEVICES[0]}/status",
                                b"online", qos=1, hostname="127.0.0.1", port=mqtt_port)
        await asyncio.sleep(0.5)
    if stack.console is not None:
        await console_healthy(stack, deadline - time.monotonic())


async def console_healthy(stack: Stack, timeout_s: float = 60.0) -> None:
    """Until the console child answers ``/healthz`` with 200."""
    assert stack.console is not None
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=stack.console_url, timeout=5) as client:
        while True:
            assert stack.console.alive(), stack.console.tail()
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass  # not listening yet
            assert time.monotonic() < deadline, "the console never came up"
            await asyncio.sleep(0.2)


async def scalar(dsn: str, schema: str, query: str) -> Any:  # Any: one column of any type
    conn = await connect(dsn, schema, autocommit=True)
    try:
        cur = await conn.execute(query)
        row = await cur.fetchone()
        return row[0] if row else None
    finally:
        await conn.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class Counts:
    published: int
    landed: int
    lost: int
    duplicated: int
    rejects_published: int
    rejected: int
    rejects_duplicated: int
    alerts_expected: int
    alerts_opened: int
    messages_expected: int
    messages_delivered: int

    def line(self) -> str:
        return (f"readings published={self.published} landed={self.landed} lost={self.lost} "
                f"duplicated={self.duplicated}; rejects published={self.rejects_published} "
                f"stored={self.rejected} duplicated={self.rejects_duplicated}; alerts "
                f"expected={self.alerts_expected} opened={self.alerts_opened}; messages "
                f"expected={self.messages_expected} delivered={self.messages_delivered}")


async def landed_readings(stack: Stack) -> int:
    """Telemetry rows (the readiness probe's status row is not load)."""
    return int(await scalar(stack.dsn, stack.schema,
                            "SELECT count(*) FROM readings WHERE metric <> 'online'"))


async def count(stack: Stack, published: Published) -> Counts:
    dsn, schema = stack.dsn, stack.schema
    rows = await landed_readings(stack)
    distinct = int(await scalar(
        dsn, schema, "SELECT count(*) FROM (SELECT DISTINCT device_id, metric, seq FROM readings "
                     "WHERE metric <> 'online') d"))
    rejects = int(await scalar(
        dsn, schema, f"SELECT count(*) FROM rejects WHERE reason = 'unknown_device' "
                     f"AND topic LIKE '%/{GHOST}/%'"))
    distinct_rejects = int(await scalar(
        dsn, schema, f"SELECT count(DISTINCT payload) FROM rejects WHERE reason = "
                     f"'unknown_device' AND topic LIKE '%/{GHOST}/%'"))
    alerts = int(await scalar(dsn, schema, "SELECT count(*) FROM alerts WHERE hazard = 'gas'"))
    return Counts(
        published=published.readings, landed=distinct, lost=published.readings - distinct,
        duplicated=rows - distinct, rejects_published=published.rejects,
        rejected=distinct_rejects, rejects_duplicated=rejects - distinct_rejects,
        alerts_expected=1, alerts_opened=alerts, messages_expected=stack.messages_expected,
        messages_delivered=len(stack.sink.messages) + sum(len(f.messages)
                                                          for f in stack.far_ends))


async def settle(stack: Stack, published: Published, *, timeout_s: float = 60.0) -> Counts:
    """Counts once every published reading and reject has landed and both messages went out,
    plus a short quiet period in which a duplicate would show."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = await count(stack, published)
        if (counts.landed >= counts.published and counts.rejected >= counts.rejects_published
                and counts.messages_delivered >= counts.messages_expected):
            break
        if time.monotonic() > deadline:
            return counts
        for child in stack.children():
            assert child.alive(), child.tail()
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.5)  # a late duplicate would arrive now
    return await count(stack, published)


async def until(probe: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not await probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def assert_exact(counts: Counts, *, rejects_duplicated_bound: int = 0) -> None:
    """Nothing lost, nothing duplicated, one alert, every expected message delivered once."""
    log.info("%s", counts.line())
    assert counts.published > 0 and counts.rejects_published > 0
    assert (counts.lost, counts.duplicated) == (0, 0), counts.line()
    assert counts.landed == counts.published, counts.line()
    assert counts.rejected == counts.rejects_published, counts.line()
    assert counts.rejects_duplicated <= rejects_duplicated_bound, counts.line()
    assert counts.alerts_opened == counts.alerts_expected, counts.line()
    assert counts.messages_delivered == counts.messages_expected, counts.line()

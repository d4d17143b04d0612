"""Alert latency: MQTT publish of a device's first hazardous reading -> its SMS at a local sink.

    .venv/bin/python -m bench.alert_latency --bus kafka|memory [--load N] [--samples K]
        [--open-alerts M] [--policy]

The real pipeline runs in this process, wired as tests/integration/test_end_to_end.py
wires it: ingest (MQTT -> KafkaHop, or DatabaseHop + MemoryBus as the embedded default),
the store writer (kafka only), the detectors and alerting. A community of normal gas
devices plus K leak devices is registered. Each leak device, one every --spacing-ms,
publishes one normal reading and then 60 %LEL (past level 2: a red gas alert routed to
one SMS receiver, json://127.0.0.1:{sink}/sms). The time just before that publish is
the start; the sink's receive stamp (SinkMessage.received_at) is the end. Each leak
device has its own room "R{n}", which the SMS names, so every SMS maps to its device.

The sink and the publishers run in their own processes: the far end and the devices
are not on the pipeline's event loop. --load N adds N normal readings/s (messages of
4 readings each: lel, co, battery, rssi) from the community devices while measuring.
A few leak devices warm the path first (Kafka group joins, first connections) and are
not counted. Every sample must give exactly one SMS; missing and duplicates are
reported. The last line is the headline.

--open-alerts M first writes M live alerts (orange gas, on M more devices "held-{i}")
with what the pipeline leaves behind for each: the opening audit row, a sent SMS in the
outbox and, under --policy, a pending reminder in ``escalations`` (due after the run).
Every query the pipeline makes per detection or per escalation tick then runs against
that many live alerts. --policy routes through an escalation policy instead of a plain
route: the station's SMS at once (a person in a recipient group, with a fallback
receiver, so the fallback scan runs every tick), the duty officer's after 600 s.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from typing import Any

import httpx
import numpy as np
import orjson
import paho.mqtt.client as mqtt
from aiokafka.admin import AIOKafkaAdminClient
from paho.mqtt.enums import CallbackAPIVersion
from psycopg import sql

from alerting.service import AlertingService
from bench._services import host_port, service_env
from config.settings import Settings, load
from detectors.service import DetectorService
from ingest import DatabaseHop, KafkaHop, StoreWriterService
from shouwang.bus import TOPICS
from shouwang.sink import LocalSink
from shouwang.store import ReadingStore, connect
from shouwang.wiring import ServiceRunner, ingest_service, mqtt_source, open_bus, prepare_store

log = logging.getLogger(__name__)

SITE = "bench"
HAZARD_LEL = 60.0  # past the 50 %LEL level 2: red
NORMAL_LEL = 0.8
LOAD_VALUES = {"lel": NORMAL_LEL, "co": 1.0, "battery": 90.0, "rssi": -60.0}
ROOM = re.compile(r"R(\d+)")
# SinkMessage as the sink's GET /messages returns it.
SinkRecord = dict[str, Any]  # Any: JSON


def _client(prefix: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{prefix}-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    return client


def _telemetry(root: str, device_id: str) -> str:
    return f"{root}/{SITE}/{device_id}/telemetry"


# --- child processes (spawned: the parent runs threads and an event loop) -----------------

def _run_sink(ports: Queue[int], stop: Event) -> None:
    async def serve() -> None:
        sink = LocalSink("127.0.0.1", 0)
        stopping = asyncio.Event()
        serving = asyncio.create_task(sink.run(stopping), name="bench.sink")
        await sink.ready.wait()
        ports.put(sink.port)
        while not stop.is_set():
            await asyncio.sleep(0.1)
        stopping.set()
        await serving

    asyncio.run(serve())


def _publish_samples(address: tuple[str, int], root: str, numbers: Sequence[int],
                     spacing_s: float, results: Queue[list[tuple[int, float]]]) -> None:
    """Per leak device: a normal reading, then 60 %LEL; returns when each hazard was sent."""
    client = _client("bench-leak")
    client.connect(*address)
    client.loop_start()
    sent: list[tuple[int, float]] = []
    try:
        began = time.monotonic()
        for slot, n in enumerate(numbers):
            delay = began + slot * spacing_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            topic = _telemetry(root, f"leak-{n}")
            client.publish(topic, orjson.dumps({"ts": time.time(), "seq": 0,
                                                "values": {"lel": NORMAL_LEL}}),
                           qos=1).wait_for_publish(30)
            published_at = time.time()
            info = client.publish(topic, orjson.dumps({"ts": published_at, "seq": 1,
                                                       "values": {"lel": HAZARD_LEL}}), qos=1)
            info.wait_for_publish(30)
            if info.is_published():
                sent.append((n, published_at))
    finally:
        client.disconnect()
        client.loop_stop()
        results.put(sent)


def _publish_load(address: tuple[str, int], root: str, devices: int, readings_per_s: int,
                  stop: Event, acked: Synchronized[int]) -> None:
    """Normal readings from the community at a steady rate until ``stop``."""
    client = _client("bench-load")

    def on_publish(*_: object) -> None:
        with acked.get_lock():
            acked.value += 1

    client.on_publish = on_publish
    client.connect(*address)
    client.loop_start()
    per_s = readings_per_s / len(LOAD_VALUES)
    burst = max(1, int(per_s * 0.05))  # fall behind by more and the excess is skipped
    published = skipped = 0
    try:
        began = time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - began) * per_s) - skipped
            if due - published > burst:
                skipped += due - published - burst
                due = published + burst
            while published < due:
                device, seq = published % devices, published // devices
                client.publish(_telemetry(root, f"gas-{device}"), orjson.dumps(
                    {"ts": time.time(), "seq": seq, "values": LOAD_VALUES}), qos=1)
                published += 1
            time.sleep(0.005)
        deadline = time.monotonic() + 10
        while acked.value < published and time.monotonic() < deadline:
            time.sleep(0.01)  # the last PUBACKs, so the count matches what was sent
    finally:
        client.disconnect()
        client.loop_stop()


# --- the measurement ----------------------------------------------------------------------

def _alerting(args: argparse.Namespace, sink_port: int) -> dict[str, Any]:  # Any: config
    receivers = [{"name": "fire-station-sms", "channel": "sms",
                  "urls": [f"json://127.0.0.1:{sink_port}/sms"]}]
    if not args.policy:
        return {"receivers": receivers, "storm_window_s": 0,  # see below
                "routes": [{"hazards": ["gas"], "min_severity": "red",
                            "receivers": ["fire-station-sms"]}]}
    # The duty officer's SMS goes to another sink path: only the station's first SMS counts.
    receivers.append({"name": "duty-officer-sms", "channel": "sms",
                      "urls": [f"json://127.0.0.1:{sink_port}/duty"]})
    return {
        "receivers": receivers,
        "groups": [
            {"name": "fire-station", "recipients": [
                {"name": "station", "receivers": ["fire-station-sms", "duty-officer-sms"],
                 "fallback_after_s": 30}]},
            {"name": "duty-officers", "recipients": [
                {"name": "duty", "receivers": ["duty-officer-sms"]}]},
        ],
        "policies": [{"name": "gas", "hazards": ["gas"], "min_severity": "red",
                      "steps": [{"groups": ["fire-station"]},
                                {"after_s": 600, "groups": ["duty-officers"]}],
                      "remind_every_s": 600, "max_reminders": 2}],
        # One leak every 150 ms is a storm for the station by design (more than 10 alerts
        # within 30 s would wait for one summary); the benchmark times each alert's own
        # first message, so storms are summarised per batch only, as before the window.
        "storm_window_s": 0,
    }


def _settings(args: argparse.Namespace, env: dict[str, str], run: str, sink_port: int,
              leak_devices: int) -> Settings:
    mqtt_host, mqtt_port = host_port(env["SHOUWANG_TEST_MQTT"])
    devices = [{"id": f"gas-{i}", "type": "gas", "site": SITE, "building": "1号楼",
                "report_interval_s": 600} for i in range(args.devices)]
    devices += [{"id": f"leak-{n}", "type": "gas", "site": SITE, "room": f"R{n}",
                 "report_interval_s": 600} for n in range(leak_devices)]
    devices += [{"id": f"held-{i}", "type": "gas", "site": SITE, "building": f"{i % 20}号楼",
                 "room": f"H{i}", "report_interval_s": 3600} for i in range(args.open_alerts)]
    return load(
        None,
        sites=[{"id": SITE, "name": "阳光小区"}],
        devices=devices,
        alerting=_alerting(args, sink_port),
        database={"dsn": env["SHOUWANG_TEST_PG_DSN"], "schema_name": run},
        mqtt={"host": mqtt_host, "port": mqtt_port, "client_id": f"{run}-ingest",
              "topic_root": f"{run}/v1"},
        bus={"kind": args.bus, "kafka_bootstrap": env["SHOUWANG_TEST_KAFKA"],
             "topic_prefix": f"{run}."},
    )


async def _sink_messages(sink_url: str) -> list[SinkRecord]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{sink_url}/messages")
        response.raise_for_status()
        records: list[SinkRecord] = response.json()
        return [r for r in records if r["channel"] == "sms"]


def _by_room(records: Sequence[SinkRecord]) -> tuple[dict[int, list[float]], int]:
    """Receive times per leak device number, and how many SMS named no leak device."""
    arrivals: defaultdict[int, list[float]] = defaultdict(list)
    stray = 0
    for record in records:
        match = ROOM.search(record["body"])
        if match is None:
            stray += 1
        else:
            arrivals[int(match.group(1))].append(record["received_at"])
    return arrivals, stray


async def _wait_for_sms(sink_url: str, numbers: Sequence[int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    wanted = set(numbers)
    while time.monotonic() < deadline:
        arrivals, _ = _by_room(await _sink_messages(sink_url))
        if wanted <= arrivals.keys():
            return
        await asyncio.sleep(0.1)


def _in_child(ctx: SpawnContext, target: Callable[..., None], *args: object) -> SpawnProcess:
    process = ctx.Process(target=target, args=args, daemon=True)
    process.start()
    return process


async def _publish_and_collect(ctx: SpawnContext, address: tuple[str, int], root: str,
                               numbers: Sequence[int],
                               spacing_s: float) -> list[tuple[int, float]]:
    results: Queue[list[tuple[int, float]]] = ctx.Queue()
    process = _in_child(ctx, _publish_samples, address, root, list(numbers), spacing_s,
                              results)
    try:
        sent: list[tuple[int, float]] = await asyncio.to_thread(
            results.get, True, 60 + len(numbers) * spacing_s)
        return sent
    finally:
        await asyncio.to_thread(process.join, 10)


async def _stage_times(dsn: str, schema: str) -> dict[int, tuple[float, float]]:
    """Per leak device: when its alert opened and when its SMS was marked sent."""
    conn = await connect(dsn, schema, autocommit=True)
    try:
        cur = await conn.execute(
            "SELECT a.device_id, extract(epoch FROM a.opened_at)::float8, "
            "extract(epoch FROM min(n.sent_at))::float8 FROM alerts a "
            "JOIN notifications n ON n.alert_id = a.id "
            "WHERE a.device_id LIKE 'leak-%%' GROUP BY a.id")
        return {int(device.removeprefix("leak-")): (opened, sent)
                for device, opened, sent in await cur.fetchall()}
    finally:
        await conn.close()


async def _hold_open_alerts(dsn: str, schema: str, count: int, *, policy: bool) -> None:
    """``count`` live alerts as the pipeline leaves them, opened over the last 10 minutes."""
    if not count:
        return
    now = time.time()
    conn = await connect(dsn, schema, autocommit=True)
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO alerts (site, device_id, hazard, kind, severity, status, opened_at, "
                "last_value, message) SELECT %s, 'held-' || i, 'gas', 'hazard', 3, 'open', "
                "to_timestamp(%s - 600 + i * 0.5), 30, 'held open by the benchmark' "
                "FROM generate_series(0, %s - 1) AS i", (SITE, now, count))
            await conn.execute(
                "INSERT INTO alert_events (alert_id, at, actor, source, action, to_status) "
                "SELECT id, opened_at, 'system', 'detector', 'opened', 'open' FROM alerts")
            await conn.execute(
                "INSERT INTO notifications (alert_id, receiver, channel, body, status, attempts, "
                "created_at, next_attempt_at, sent_at) SELECT id, 'fire-station-sms', 'sms', "
                "message, 'sent', 1, opened_at, opened_at, opened_at FROM alerts")
            if policy:  # the next reminder, due after the run
                await conn.execute(
                    "INSERT INTO escalations (alert_id, policy, next_step, due_at) "
                    "SELECT id, 'gas', 1, to_timestamp(%s + 3600 + id) FROM alerts", (now,))
            cur = await conn.execute("SELECT count(*) FROM alerts WHERE status = 'open'")
            row = await cur.fetchone()
        print(f"open alerts before measuring: {row[0] if row else 0:,}")
    finally:
        await conn.close()


async def _count_readings(dsn: str, schema: str) -> int:
    conn = await connect(dsn, schema, autocommit=True)
    try:
        cur = await conn.execute("SELECT count(*) FROM readings")
        row = await cur.fetchone()
        return int(row[0]) if row else 0
    finally:
        await conn.close()


async def _drop(env: dict[str, str], run: str, bus_kind: str) -> None:
    conn = await connect(env["SHOUWANG_TEST_PG_DSN"], autocommit=True)
    try:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(run)))
    finally:
        await conn.close()
    if bus_kind == "kafka":
        admin = AIOKafkaAdminClient(bootstrap_servers=env["SHOUWANG_TEST_KAFKA"])
        await admin.start()
        try:
            await admin.delete_topics([f"{run}.{t}" for t in TOPICS])
        finally:
            await admin.close()


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "none"
    return ", ".join(f"{name} {np.percentile(values, q) * 1000:.0f}"
                     for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100)))


async def _measure(args: argparse.Namespace, env: dict[str, str], run: str,
                   ctx: SpawnContext, sink_url: str, sink_port: int) -> None:
    warmups = list(range(args.warmup))
    samples = list(range(args.warmup, args.warmup + args.samples))
    settings = _settings(args, env, run, sink_port, len(warmups) + len(samples))
    dsn = env["SHOUWANG_TEST_PG_DSN"]
    address = host_port(env["SHOUWANG_TEST_MQTT"])
    root = settings.mqtt.topic_root
    await prepare_store(dsn, settings)
    await _hold_open_alerts(dsn, run, args.open_alerts, policy=args.policy)
    stop = asyncio.Event()
    load_stop = ctx.Event()
    acked: Synchronized[int] = ctx.Value("q", 0)
    loader: SpawnProcess | None = None
    async with open_bus(settings) as bus, ReadingStore(dsn, run) as store, \
            mqtt_source(settings, *address) as source:
        kafka = args.bus == "kafka"
        runner = ServiceRunner(stop)
        runner.add("ingest", ingest_service(
            settings, source, KafkaHop(bus) if kafka else DatabaseHop(store, bus)).run)
        if kafka:
            runner.add("store-writer", StoreWriterService(bus, store, group="store-writer").run)
        runner.add("detectors", DetectorService(settings, bus).run)
        runner.add("alerting", AlertingService(settings, bus, dsn, schema=run).run)
        running = asyncio.create_task(runner.run(), name="bench.stack")
        try:
            warm = await _publish_and_collect(ctx, address, root, warmups, 0.2)
            await _wait_for_sms(sink_url, warmups, 60)
            arrivals, _ = _by_room(await _sink_messages(sink_url))
            cold = [arrivals[n][0] - t for n, t in warm if arrivals.get(n)]
            print(f"warm-up: {len(cold)}/{len(warmups)} alerts delivered, latency ms "
                  f"{', '.join(f'{c * 1000:.0f}' for c in cold)} (not counted)")

            if args.load:
                loader = _in_child(ctx, _publish_load, address, root, args.devices,
                                         args.load, load_stop, acked)
                await asyncio.sleep(args.settle_s)
            acked_before, began = acked.value, time.monotonic()
            sent = await _publish_and_collect(ctx, address, root, samples,
                                              args.spacing_ms / 1000)
            await _wait_for_sms(sink_url, [n for n, _ in sent], args.wait_s)
            await asyncio.sleep(args.duplicate_wait_s)  # a duplicate would arrive by now
            load_rate = (acked.value - acked_before) * len(LOAD_VALUES) / (
                time.monotonic() - began)
            records = await _sink_messages(sink_url)
            if loader is not None:
                load_stop.set()
                await asyncio.to_thread(loader.join, 30)
                published = acked.value * len(LOAD_VALUES) + 2 * len(sent + warm)
                landed = await _count_readings(dsn, run)
                print(f"load: {args.load} readings/s offered, {load_rate:,.0f} readings/s "
                      f"acknowledged by the broker while measuring; readings in the "
                      f"database at the end: {landed:,}/{published:,}")
            stages = await _stage_times(dsn, run)
        finally:
            load_stop.set()
            if loader is not None and loader.is_alive():
                loader.terminate()
            stop.set()
            await running

    arrivals, stray = _by_room(records)
    published_at = dict(sent)
    latencies = [arrivals[n][0] - published_at[n] for n in samples
                 if n in published_at and arrivals.get(n)]
    missing = [n for n in samples if not arrivals.get(n)]
    duplicates = sum(len(arrivals[n]) - 1 for n in samples if len(arrivals.get(n, ())) > 1)
    print(f"samples: {len(samples)} expected, {len(sent)} published (acked), "
          f"{len(latencies)} delivered, {len(missing)} missing, {duplicates} duplicate SMS, "
          f"{stray} SMS naming no leak device, "
          f"{sum(len(arrivals[n]) for n in warmups)} warm-up SMS")
    if missing:
        print(f"missing: {', '.join(f'leak-{n}' for n in missing[:20])}")
    if not latencies:
        print(f"alert latency {args.bus} {_label(args)}: no alert delivered "
              f"(0/{len(samples)} delivered)")
        raise SystemExit(1)
    to_open = [stages[n][0] - published_at[n] for n in samples
               if n in stages and n in published_at]
    to_sink = [arrivals[n][0] - stages[n][0] for n in samples
               if n in stages and arrivals.get(n)]
    print(f"publish -> alert opened (DB): {_ms(to_open)} ms")
    print(f"alert opened -> SMS at sink: {_ms(to_sink)} ms")
    print(f"latency ms: min {min(latencies) * 1000:.0f}, mean "
          f"{float(np.mean(latencies)) * 1000:.0f}, {_ms(latencies)}")
    p50, p90, p99 = (np.percentile(latencies, q) * 1000 for q in (50, 90, 99))
    extra = f", {duplicates} duplicates" if duplicates else ""
    print(f"alert latency {args.bus} {_label(args)}: p50 {p50:.0f} ms, p90 {p90:.0f} ms, "
          f"p99 {p99:.0f} ms, max {max(latencies) * 1000:.0f} ms "
          f"({len(latencies)}/{len(samples)} delivered{extra})")


def _label(args: argparse.Namespace) -> str:
    label = "idle" if args.load == 0 else f"under load {args.load} readings/s"
    if args.open_alerts:
        label += f", {args.open_alerts} open alerts"
    return label + (", escalation policy" if args.policy else "")


async def _main(args: argparse.Namespace) -> None:
    env = service_env()
    run = f"bench_{uuid.uuid4().hex[:8]}"
    ctx = multiprocessing.get_context("spawn")
    print(f"run {run}: bus {args.bus}, load {args.load} readings/s, {args.samples} samples "
          f"{args.spacing_ms:g} ms apart, {args.devices} normal devices, "
          f"{args.open_alerts} open alerts, {'policy' if args.policy else 'plain route'}")
    ports: Queue[int] = ctx.Queue()
    sink_stop = ctx.Event()
    sink = _in_child(ctx, _run_sink, ports, sink_stop)
    try:
        sink_port = await asyncio.to_thread(ports.get, True, 30)
        await _measure(args, env, run, ctx, f"http://127.0.0.1:{sink_port}", sink_port)
    finally:
        sink_stop.set()
        await asyncio.to_thread(sink.join, 10)
        if sink.is_alive():
            sink.terminate()
        try:
            await _drop(env, run, args.bus)
        except Exception as err:  # cleanup must not hide the measurement's own error
            log.warning("could not drop schema/topics run=%s: %s", run, err)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bus", choices=["memory", "kafka"], default="kafka")
    parser.add_argument("--load", type=int, default=0,
                        help="background normal readings/s while measuring (0 = idle)")
    parser.add_argument("--samples", type=int, default=100, help="leak devices measured")
    parser.add_argument("--devices", type=int, default=200, help="normal community devices")
    parser.add_argument("--spacing-ms", type=float, default=150.0,
                        help="between one leak device's hazard and the next")
    parser.add_argument("--warmup", type=int, default=3, help="leak devices not counted")
    parser.add_argument("--settle-s", type=float, default=3.0,
                        help="load runs this long before the first sample")
    parser.add_argument("--wait-s", type=float, default=30.0,
                        help="longest wait for the last SMS after the last publish")
    parser.add_argument("--duplicate-wait-s", type=float, default=2.0)
    parser.add_argument("--log-level", default="WARNING", help="e.g. DEBUG to trace stages")
    parser.add_argument("--open-alerts", type=int, default=0,
                        help="live alerts already open before measuring")
    parser.add_argument("--policy", action="store_true",
                        help="route through an escalation policy instead of a plain route")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aiokafka", "httpx", "httpcore", "psycopg", "uvicorn", "apprise"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()

"""End-to-end ingest throughput: MQTT publish -> rows committed in PostgreSQL.

    .venv/bin/python -m bench.ingest --bus memory|kafka --mode live|drain [--messages N]

live:  publishers run while ingest runs (what a site sees; publishers share the 2 cores).
drain: every message is queued at the broker first (persistent session), then ingest is
       started and timed until the last row commits: the pipeline's own ceiling.
Ingest runs as the real `shouwang ingest` processes (memory: one process writing the DB
itself; kafka: an MQTT->Kafka process and a Kafka->DB writer process). Counts published
against landed; the last line is the figure. Also printed: the rate from the first committed
row on (without process start-up) and the CPU seconds the ingest processes used per reading,
which moves far less than wall-clock rates when the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psycopg
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from psycopg import sql

from bench._services import host_port, service_env
from shouwang.store import connect, migrate

METRICS = ("lel", "co", "battery", "rssi")


def _publish(address: tuple[str, int], root: str, devices: range, per_device: int,
             start_ts: float, acked: multiprocessing.Value) -> None:  # type: ignore[valid-type]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    count = 0

    def on_publish(*_: object) -> None:
        nonlocal count
        count += 1

    client.on_publish = on_publish
    client.connect(*address)
    client.loop_start()
    for n in range(per_device):
        for d in devices:
            payload = orjson.dumps({"ts": start_ts + n * 0.001, "seq": n, "values": {
                "lel": 1.0 + (n % 7) * 0.1, "co": 2.0, "battery": 90.0, "rssi": -60.0}})
            while client.publish(f"{root}/bench/gas-{d}/telemetry", payload, qos=1).rc \
                    == mqtt.MQTT_ERR_QUEUE_SIZE:
                time.sleep(0.001)
    deadline = time.monotonic() + 120
    while count < per_device * len(devices) and time.monotonic() < deadline:
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()
    with acked.get_lock():
        acked.value += count


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a live process (Linux /proc); None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _count(dsn: str, schema: str) -> int:
    with psycopg.connect(dsn, options=f"-c search_path={schema}") as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
        return int(row[0]) if row else 0


async def _prepare(dsn: str, schema: str) -> None:
    conn = await connect(dsn, schema)
    await migrate(conn, schema)
    await conn.commit()
    await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bus", choices=["memory", "kafka"], default="memory")
    parser.add_argument("--mode", choices=["live", "drain"], default="live")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--ingestors", type=int, default=1,
                        help="kafka only: MQTT ingest processes on one shared subscription")
    args = parser.parse_args()

    env = service_env()
    dsn, mqtt_addr = env["SHOUWANG_TEST_PG_DSN"], host_port(env["SHOUWANG_TEST_MQTT"])
    run = f"bench_{uuid.uuid4().hex[:8]}"
    root = f"{run}/v1"
    per_device = max(1, args.messages // args.devices)
    messages = per_device * args.devices
    expected = messages * len(METRICS)
    asyncio.run(_prepare(dsn, run))

    work = Path(tempfile.mkdtemp(prefix="shouwang-bench-"))
    config = work / "bench.yaml"
    config.write_text(yaml.safe_dump({
        "database": {"dsn": dsn, "schema_name": run},
        "mqtt": {"host": mqtt_addr[0], "port": mqtt_addr[1], "client_id": f"{run}-ingest",
                 "topic_root": root},
        "bus": {"kind": args.bus, "kafka_bootstrap": env["SHOUWANG_TEST_KAFKA"],
                "topic_prefix": f"{run}."},
        "sites": [{"id": "bench", "name": "bench"}],
        "devices": [{"id": f"gas-{i}", "type": "gas", "site": "bench"}
                    for i in range(args.devices)],
    }))
    if args.bus == "kafka":
        roles = ["writer"] + [f"mqtt:{n}" for n in range(args.ingestors)]
    else:
        roles = ["both"]

    def start(role: str) -> subprocess.Popen[bytes]:
        name, _, index = role.partition(":")
        env = os.environ.copy()
        if args.ingestors > 1 and name == "mqtt":
            env["SHOUWANG_MQTT__CLIENT_ID"] = f"{run}-ingest-{index}"
            env["SHOUWANG_MQTT__SHARE_GROUP"] = "ingest"
        return subprocess.Popen(
            [sys.executable, "-m", "shouwang.cli", "--log-level", "warning", "ingest",
             "--config", str(config), "--role", name],
            stderr=(work / f"{name}{index}.log").open("wb"), env=env)

    acked = multiprocessing.Value("q", 0)
    slices = [range(i, args.devices, args.publishers) for i in range(args.publishers)]
    start_ts = time.time() - 86400

    def publish() -> list[multiprocessing.Process]:
        procs = [multiprocessing.Process(target=_publish, args=(
            mqtt_addr, root, devices, per_device, start_ts, acked)) for devices in slices]
        for p in procs:
            p.start()
        return procs

    procs: list[subprocess.Popen[bytes]] = []
    try:
        if args.mode == "drain":
            # Create the persistent session, stop, queue everything, then time the drain.
            first = [start(role) for role in roles]
            while _count(dsn, run) == 0 and all(p.poll() is None for p in first):
                _publish_probe(mqtt_addr, root)
                time.sleep(0.2)
            for p in first:
                p.send_signal(signal.SIGTERM)
                p.wait(30)
            base = _count(dsn, run)
            for p in publish():
                p.join()
            began = time.perf_counter()
            procs = [start(role) for role in roles]
        else:
            procs = [start(role) for role in roles]
            base = 0
            while _count(dsn, run) == 0:
                _publish_probe(mqtt_addr, root)
                time.sleep(0.2)
            base = _count(dsn, run)
            began = time.perf_counter()
            publishers = publish()
        deadline = time.monotonic() + 600
        landed = 0
        first_seen: tuple[float, int] | None = None  # when rows were first seen landing, how many
        while time.monotonic() < deadline:
            landed = _count(dsn, run) - base
            if first_seen is None and landed > 0:
                first_seen = (time.perf_counter(), landed)
            if landed >= expected:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - began
        cpu = [_cpu_seconds(p.pid) for p in procs]
        if args.mode == "live":
            for p in publishers:
                p.join()
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(run)))
    rate = landed / elapsed
    print(f"published messages: {messages} (acknowledged by broker: {acked.value}), "
          f"readings expected: {expected}, landed: {landed}, lost: {expected - landed}")
    print(f"elapsed: {elapsed:.2f} s")
    if first_seen is not None and began + elapsed > first_seen[0]:
        steady = (landed - first_seen[1]) / (began + elapsed - first_seen[0])
        print(f"from the first committed row on: {steady:,.0f} readings/s")
    if landed and all(seconds is not None for seconds in cpu):
        used = sum(seconds for seconds in cpu if seconds is not None)
        print(f"ingest CPU: {used:.2f} s in {len(cpu)} process(es), start-up included: "
              f"{used / landed * 1e6:.1f} us per reading")
    print(f"ingest {args.bus}/{args.mode}: {rate:,.0f} readings/s end to end "
          f"({landed}/{expected} landed)")


def _publish_probe(address: tuple[str, int], root: str) -> None:
    payload = orjson.dumps({"ts": time.time() - 2 * 86400, "values": {"lel": 0.0}})
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(*address)
    client.loop_start()
    client.publish(f"{root}/bench/gas-0/telemetry", payload, qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main()

"""Console memory and CPU with many open live connections.

    .venv/bin/python -m bench.console_streams [--streams 200] [--rate 10] [--seconds 20]

Runs the real `shouwang console` process (Kafka bus, the PostgreSQL of scripts/services.sh),
logs in once, and opens --streams server-sent-event connections to /api/stream with that
session. Three windows are measured from /proc/<pid>: the console idle with no viewer,
idle with every stream open, and while --rate alert updates per second are published on
Kafka's alert-updates topic (each reaches every stream). RSS is the resident set at the end
of a window; CPU is (utime + stime) over the window's wall time, in % of one core. Every
stream must receive every update. The last line is the headline.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import yaml
from psycopg import sql

from bench._services import ROOT, service_env
from config.settings import load
from console.users import Role, create_user
from shouwang.bus.kafka import KafkaBus
from shouwang.codec import encode_alert
from shouwang.models import Alert, AlertStatus, DetectionKind, Location, Severity
from shouwang.store import connect
from shouwang.wiring import prepare_store

log = logging.getLogger("bench.console_streams")

PASSWORD = "bench-password-123"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime + stime


def _rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE_KB / 1024


async def _window(pid: int, seconds: float) -> tuple[float, float]:
    """(CPU % of one core, RSS MiB) over ``seconds``."""
    cpu, wall = _cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    used = _cpu_seconds(pid) - cpu
    return 100 * used / (time.monotonic() - wall), _rss_mb(pid)


async def _viewer(client: httpx.AsyncClient, received: list[int], index: int,
                  opened: asyncio.Event, open_count: list[int], streams: int) -> None:
    async with client.stream("GET", "/api/stream") as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith(":") and not opened.is_set() and line.startswith(": live"):
                open_count[0] += 1
                if open_count[0] == streams:
                    opened.set()
            elif line.startswith("event: alert"):
                received[index] += 1


async def measure(streams: int, rate: float, seconds: float) -> None:
    env = service_env()
    dsn, kafka = env["SHOUWANG_TEST_PG_DSN"], env["SHOUWANG_TEST_KAFKA"]
    run = f"bench_streams_{uuid.uuid4().hex[:6]}"
    port = _free_port()
    shape = {
        "sites": [{"id": "bench", "name": "基准小区"}],
        "database": {"dsn": dsn, "schema_name": run},
        "bus": {"kind": "kafka", "kafka_bootstrap": kafka, "topic_prefix": f"{run}."},
        "console": {"host": "127.0.0.1", "port": port},
    }
    await prepare_store(dsn, load(None, **shape))
    conn = await connect(dsn, run, autocommit=True)
    await create_user(conn, name="bench", password=PASSWORD, role=Role.VIEWER, sites=["*"])
    work = Path(tempfile.mkdtemp(prefix="shouwang-bench-"))
    config = work / "console.yaml"
    config.write_text(yaml.safe_dump(shape, allow_unicode=True))
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("SHOUWANG_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "shouwang.cli", "--log-level", "warning", "console",
         "--config", str(config)], cwd=ROOT, env=child_env,
        stdout=subprocess.DEVNULL, stderr=(work / "console.log").open("wb"))
    tasks: list[asyncio.Task[None]] = []
    try:
        base = f"http://127.0.0.1:{port}"
        limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=10)
        async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10, read=None),
                                     limits=limits) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the console did not start: see " + str(work))
                await asyncio.sleep(0.2)
            login = await client.post("/api/login", json={"name": "bench", "password": PASSWORD})
            login.raise_for_status()
            await asyncio.sleep(2)  # settle after start-up
            idle_cpu, idle_rss = await _window(proc.pid, 10)
            log.info("no viewers: cpu %.1f%% rss %.0f MiB", idle_cpu, idle_rss)

            received = [0] * streams
            opened, open_count = asyncio.Event(), [0]
            tasks = [asyncio.create_task(
                _viewer(client, received, i, opened, open_count, streams), name=f"viewer-{i}")
                for i in range(streams)]
            await asyncio.wait_for(opened.wait(), 60)
            open_cpu, open_rss = await _window(proc.pid, 10)
            log.info("%d streams open, quiet: cpu %.1f%% rss %.0f MiB", streams, open_cpu,
                     open_rss)

            async with KafkaBus(kafka, topic_prefix=f"{run}.") as bus:
                updates = int(rate * seconds)
                cpu0, wall0 = _cpu_seconds(proc.pid), time.monotonic()
                for n in range(updates):
                    alert = Alert(id=n + 1, site="bench", device_id=f"d{n}", hazard="gas",
                                  kind=DetectionKind.HAZARD, severity=Severity.RED,
                                  status=AlertStatus.OPEN, opened_at=time.time(),
                                  location=Location(building="1号楼", room=f"R{n}"),
                                  last_value=62.0, message="bench")
                    await bus.publish("alert-updates", [(str(alert.id), encode_alert(alert))])
                    await asyncio.sleep(max(0.0, wall0 + (n + 1) / rate - time.monotonic()))
                deadline = time.monotonic() + 30
                while min(received) < updates and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                busy_cpu = 100 * (_cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - wall0)
                busy_rss = _rss_mb(proc.pid)
            complete = sum(1 for r in received if r == updates)
            log.info("%d updates at %.0f/s: cpu %.1f%% rss %.0f MiB; %d/%d streams got all",
                     updates, rate, busy_cpu, busy_rss, complete, streams)
            print(f"console with {streams} live streams: idle {open_cpu:.1f}% CPU "
                  f"{open_rss:.0f} MiB RSS (no viewers: {idle_cpu:.1f}% {idle_rss:.0f} MiB); "
                  f"{rate:.0f} alert updates/s to every stream: {busy_cpu:.1f}% CPU "
                  f"{busy_rss:.0f} MiB; {complete}/{streams} streams received all {updates}")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(run)))
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    log.setLevel(logging.INFO)
    asyncio.run(measure(args.streams, args.rate, args.seconds))


if __name__ == "__main__":
    main()

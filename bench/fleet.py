"""Fleet throughput: messages/s the simulated fleet gets acknowledged by the test Mosquitto.

    .venv/bin/python -m bench.fleet [--devices 100000] [--rate 50000] [--seconds 20]
                                    [--workers N] [--with-pipeline]

Runs ``simulators.fleet.FleetRun`` (the code behind ``shouwang simulate --devices``) against
the broker in .services/env (QoS 1, realistic seeded signals), measures acknowledged
messages over a steady window after every worker has started, and samples CPU time of
the workers and of Mosquitto over that window to say what limited the rate. It also
measures, apart, how fast one process only generates the payloads (no network): the
ceiling the signal models put on one core. With ``--with-pipeline`` the whole stack
(`shouwang run`: ingest, detectors, alerting, console; in-process bus, the test PostgreSQL)
runs beside the fleet on the same cores with the fleet's registry, and the readings it
committed over the window are counted too. The last line is the figure.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import yaml
from psycopg import sql

from bench._services import ROOT, host_port, service_env
from simulators.community import Community
from simulators.fleet import FleetPlan, FleetRun, fleet_devices
from simulators.registry import registry_config

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _mosquitto_pid() -> int | None:
    pid_file = ROOT / ".services" / "mosquitto" / "mosquitto.pid"
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _generation_ceiling(devices: int, rate: float, workers: int) -> float:
    """Payloads per CPU-second one process generates for its share of the fleet (no network)."""
    share = fleet_devices("bench", devices, rate=rate, seed=1)[: devices // workers]
    community = Community(share, seed=1, epoch0=time.time())
    interval = share[0].report_interval_s
    community.due(interval)  # warm up: every device has reported once
    started = time.process_time()  # CPU time: other load on the machine does not count
    produced = len(community.due(interval * 3))
    return produced / (time.process_time() - started)


class Pipeline:
    """`shouwang run` on the test services with the fleet's devices, in its own schema."""

    def __init__(self, env: dict[str, str], devices: int, rate: float, topic_root: str) -> None:
        self.dsn = env["SHOUWANG_TEST_PG_DSN"]
        self.schema = f"bench_fleet_{uuid.uuid4().hex[:8]}"
        self._work = Path(tempfile.mkdtemp(prefix="shouwang-fleet-"))
        host, port = host_port(env["SHOUWANG_TEST_MQTT"])
        config = registry_config({"bench": "bench"},
                                 fleet_devices("bench", devices, rate=rate, seed=1))
        config.update({
            # data_dir: the first admin's password file goes here, not into .shouwang/.
            "database": {"dsn": self.dsn, "schema_name": self.schema,
                         "data_dir": str(self._work / "pg")},
            "mqtt": {"host": host, "port": port, "client_id": f"{self.schema}-ingest",
                     "topic_root": topic_root},
            "bus": {"kind": "memory"},
            "console": {"host": "127.0.0.1", "port": 0},
            "sink": {"enabled": False},
            "simulator": {"enabled": False},
        })
        self._config = self._work / "fleet.yaml"
        self._config.write_text(yaml.safe_dump(config, sort_keys=False))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shouwang.cli", "--log-level", "warning", "run",
             "--config", str(self._config)], stderr=(self._work / "run.log").open("wb"))

    def wait_ready(self, timeout_s: float) -> None:
        """Until the stack has migrated its schema and synced the registry."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise SystemExit(f"shouwang run exited; see {self._work / 'run.log'}")
            try:
                with psycopg.connect(self.dsn, options=f"-c search_path={self.schema}") as conn:
                    row = conn.execute("SELECT count(*) FROM devices").fetchone()
                    if row and row[0] > 0:
                        return
            except psycopg.Error:
                pass
            time.sleep(0.5)
        raise SystemExit("shouwang run did not become ready")

    def landed(self) -> int:
        with psycopg.connect(self.dsn, options=f"-c search_path={self.schema}") as conn:
            row = conn.execute("SELECT count(*) FROM readings").fetchone()
            return int(row[0]) if row else 0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE")
                         .format(sql.Identifier(self.schema)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=50_000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--with-pipeline", action="store_true",
                        help="run the whole stack (`shouwang run`) beside the fleet")
    args = parser.parse_args()
    env = service_env()
    host, port = host_port(env["SHOUWANG_TEST_MQTT"])

    ceiling = _generation_ceiling(args.devices, args.rate, args.workers)
    print(f"generation only, one process: {ceiling:,.0f} payloads per CPU-second")

    topic_root = f"bench-fleet-{os.getpid()}/v1"
    plan = FleetPlan(site="bench", devices=args.devices, rate=args.rate, seed=1,
                     workers=args.workers, host=host, port=port, topic_root=topic_root)
    pipeline = Pipeline(env, args.devices, args.rate, topic_root) if args.with_pipeline else None
    fleet = FleetRun(plan)
    broker = _mosquitto_pid()
    if pipeline is not None:
        pipeline.start()
        pipeline.wait_ready(300)
    fleet.start()
    try:
        deadline = time.monotonic() + 120
        while fleet.counters().publishing_since is None or \
                len(fleet.pids) < args.workers:
            if time.monotonic() > deadline:
                raise SystemExit("fleet workers did not start publishing within 120 s")
            time.sleep(0.2)
        time.sleep(3.0)  # let every worker reach its steady state (first reports spread out)
        pids = fleet.pids
        before = fleet.counters()
        cpu_before = [_cpu_s(p) for p in pids]
        broker_before = _cpu_s(broker) if broker else 0.0
        pipeline_cpu_before = _cpu_s(pipeline.process.pid) if pipeline and pipeline.process else 0.0
        landed_before = pipeline.landed() if pipeline else 0
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        time.sleep(args.seconds)
        window = time.monotonic() - started
        after = fleet.counters()
        cpu_after = [_cpu_s(p) for p in pids]
        broker_after = _cpu_s(broker) if broker else 0.0
        load_after = os.getloadavg()[0]
        landed_after = pipeline.landed() if pipeline else 0
        pipeline_cpu_after = _cpu_s(pipeline.process.pid) if pipeline and pipeline.process else 0.0
    finally:
        fleet.stop()
        if pipeline is not None:
            pipeline.stop()
    final = fleet.counters()

    rate = (after.acked - before.acked) / window
    worker_cpu = [(b - a) / window for a, b in zip(cpu_before, cpu_after, strict=True)]
    broker_cpu = (broker_after - broker_before) / window
    lines = [
        f"devices {args.devices:,}, target {args.rate:,.0f} msg/s, {args.workers} worker "
        f"processes, QoS 1, broker {host}:{port}",
        f"window {window:.1f} s: {after.acked - before.acked:,} messages acknowledged, "
        f"errors {final.errors}",
        "worker CPU: " + ", ".join(f"{c:.0%}" for c in worker_cpu)
        + f"; mosquitto CPU: {broker_cpu:.0%}; load average {load_before:.1f} -> {load_after:.1f}"
        f" on {os.cpu_count()} cores",
    ]
    # Load-independent: messages per CPU-second the workers actually got, and what the
    # machine's cores would give if nothing else ran (Mosquitto's share taken out).
    per_cpu_s = rate / sum(worker_cpu) if sum(worker_cpu) > 0 else 0.0
    broker_per_msg = broker_cpu / rate if rate > 0 else 0.0
    cores = os.cpu_count() or 1
    projected = cores / (1.0 / per_cpu_s + broker_per_msg) if per_cpu_s > 0 else 0.0
    lines.append(f"efficiency: {per_cpu_s:,.0f} msg per worker CPU-second; on {cores} idle "
                 f"cores that projects to ~{projected:,.0f} msg/s")
    if rate >= 0.97 * args.rate:
        verdict = "target reached"
    elif min(worker_cpu) >= 0.85:
        verdict = ("limited by the workers' CPU: each Python process is saturated generating "
                   "the seeded signals and driving paho (QoS 1 bookkeeping per message)")
    elif broker_cpu >= 0.85:
        verdict = "limited by Mosquitto's single thread"
    else:
        verdict = ("limited by CPU contention: workers and broker together want more than "
                   f"the {os.cpu_count()} cores give them (other load included)")
    lines.append(f"what limited it: {verdict}")
    if pipeline is not None:
        pipeline_cpu = (pipeline_cpu_after - pipeline_cpu_before) / window
        lines.append(f"pipeline beside it (`shouwang run`, memory bus): "
                     f"{(landed_after - landed_before) / window:,.0f} readings/s committed, "
                     f"CPU {pipeline_cpu:.0%}")
    for line in lines:
        print(line)
    print(f"fleet: {rate:,.0f} msg/s acknowledged")


if __name__ == "__main__":
    main()

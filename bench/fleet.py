"""Fleet throughput: messages/s the simulated fleet gets acknowledged by the test Mosquitto.

    .venv/bin/python -m bench.fleet [--devices 100000] [--rate 50000] [--seconds 20]
                                    [--workers N]

Runs ``simulators.fleet.FleetRun`` (the code behind ``shouwang simulate --devices``) against
the broker in .services/env (QoS 1, realistic seeded signals), measures acknowledged
messages over a steady window after every worker has started, and samples CPU time of
the workers and of Mosquitto over that window to say what limited the rate. It also
measures, apart, how fast one process only generates the payloads (no network): the
ceiling the signal models put on one core. The last line is the figure.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench._services import ROOT, host_port, service_env
from simulators.community import Community
from simulators.fleet import FleetPlan, FleetRun, fleet_devices

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=50_000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    host, port = host_port(service_env()["SHOUWANG_TEST_MQTT"])

    ceiling = _generation_ceiling(args.devices, args.rate, args.workers)
    print(f"generation only, one process: {ceiling:,.0f} payloads per CPU-second")

    plan = FleetPlan(site="bench", devices=args.devices, rate=args.rate, seed=1,
                     workers=args.workers, host=host, port=port,
                     topic_root=f"bench-fleet-{os.getpid()}/v1")
    fleet = FleetRun(plan)
    broker = _mosquitto_pid()
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
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        time.sleep(args.seconds)
        window = time.monotonic() - started
        after = fleet.counters()
        cpu_after = [_cpu_s(p) for p in pids]
        broker_after = _cpu_s(broker) if broker else 0.0
        load_after = os.getloadavg()[0]
    finally:
        fleet.stop()
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
    for line in lines:
        print(line)
    print(f"fleet: {rate:,.0f} msg/s acknowledged")


if __name__ == "__main__":
    main()

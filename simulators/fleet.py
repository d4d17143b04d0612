"""The load fleet: N synthetic devices on one site publishing R messages/s in total.

The devices are split into contiguous slices, one per worker process (a Python process
tops out near one core, and generating the seeded signals is most of its work: publishing
goes through the lean ``WirePublisher``, not paho).
Each worker runs its slice as an ordinary ``Community`` at speed 1, so the load is the
same realistic telemetry the demo community sends, every device reporting every
``N / R`` seconds from a seeded offset. Workers write their counters into shared memory;
the parent reads them for the live display and the summary.

Ingest only accepts registered devices: ``fleet_devices`` is deterministic in
``(site, count, rate, seed)``, so ``write_registry`` of the same arguments gives the
registry ingest needs (``shouwang simulate --write-config``).

The fleet publishes no per-device retained status: at 100,000 devices that would be
100,000 retained messages left on the broker, which a load test should not do.
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import multiprocessing.synchronize
import random
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.sharedctypes import SynchronizedArray

from shouwang.catalog import DeviceType
from shouwang.models import Device, Location
from simulators.community import Community
from simulators.devices import stable_seed
from simulators.publisher import PublisherError
from simulators.wire import WirePublisher

__all__ = ["FleetCounters", "FleetPlan", "FleetRun", "fleet_devices"]

log = logging.getLogger(__name__)

# Share of each type in a residential fleet: kitchens and smoke detectors dominate.
_TYPE_MIX: tuple[tuple[DeviceType, float], ...] = (
    (DeviceType.GAS, 0.3), (DeviceType.SMOKE, 0.3), (DeviceType.WATER, 0.1),
    (DeviceType.ELECTRICAL, 0.1), (DeviceType.WEARABLE, 0.2))
_PER_BUILDING = 200
# Per-worker counter slots in shared memory.
_HANDED, _ACKED, _ERRORS, _READINGS, _DONE, _STARTED_US = range(6)
_SLOTS = 6
_BATCH = 500


def fleet_devices(site: str, count: int, *, rate: float, seed: int) -> list[Device]:
    """``count`` devices of mixed types, each reporting every ``count / rate`` seconds.

    >>> [d.id for d in fleet_devices("s1", 3, rate=1.0, seed=7)]
    ['s1-smoke-000000', 's1-smoke-000001', 's1-gas-000002']
    >>> fleet_devices("s1", 3, rate=1.0, seed=7)[0].report_interval_s
    3.0
    """
    if count < 1 or rate <= 0:
        raise ValueError("a fleet needs at least one device and a positive rate")
    rng = random.Random(stable_seed(seed, f"fleet\x00{site}"))
    types = rng.choices([t for t, _ in _TYPE_MIX], weights=[w for _, w in _TYPE_MIX], k=count)
    interval = count / rate
    return [Device(id=f"{site}-{kind.value}-{n:06d}", type=kind, site=site,
                   location=Location(building=f"{n // _PER_BUILDING + 1}号楼",
                                     room=f"{n % _PER_BUILDING + 101}"),
                   report_interval_s=interval)
            for n, kind in enumerate(types)]


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetPlan:
    site: str
    devices: int
    rate: float  # messages per second, whole fleet
    seed: int
    workers: int
    host: str
    port: int
    topic_root: str = "shouwang/v1"
    username: str | None = None
    password: str | None = None
    window: int = 1000  # QoS 1 messages awaiting PUBACK per worker

    def __post_init__(self) -> None:
        if self.workers < 1 or self.workers > self.devices:
            raise ValueError("workers must be between 1 and the number of devices")

    def slice_of(self, worker: int) -> range:
        """The device indexes worker ``worker`` runs (contiguous, sizes differ by one)."""
        per, extra = divmod(self.devices, self.workers)
        start = worker * per + min(worker, extra)
        return range(start, start + per + (1 if worker < extra else 0))

    @staticmethod
    def auto_workers(rate: float, cpus: int) -> int:
        """One worker per ~15,000 msg/s (one process with signals), up to ``cpus``."""
        return max(1, min(cpus, math.ceil(rate / 15000.0)))


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetCounters:
    """A snapshot of the whole fleet's counters."""

    handed: int  # given to paho
    acked: int  # acknowledged by the broker (QoS 1 PUBACK)
    errors: int  # refused, or a worker that lost its broker
    readings: int  # readings in acknowledged messages
    workers_done: int
    publishing_since: float | None  # time.monotonic() of the first worker's first publish


class FleetRun:
    """Worker processes for one plan; ``start``, poll ``counters``, then ``stop``.

    Parameters
    ----------
    plan
        What to run and where to publish.
    """

    def __init__(self, plan: FleetPlan) -> None:
        self.plan = plan
        # spawn: the parent may run an event loop and paho threads; forking those is unsafe.
        self._context = multiprocessing.get_context("spawn")
        self._counters: SynchronizedArray[int] = self._context.Array("q", plan.workers * _SLOTS)
        self._stop = self._context.Event()
        self._processes: list[multiprocessing.process.BaseProcess] = []
        self.started_at = 0.0

    def start(self) -> None:
        self.started_at = time.monotonic()
        for worker in range(self.plan.workers):
            process = self._context.Process(
                target=_work, args=(self.plan, worker, self._counters, self._stop),
                name=f"shouwang-fleet-{worker}", daemon=True)
            process.start()
            self._processes.append(process)
        log.info("fleet started site=%s devices=%d rate=%g workers=%d broker=%s:%d",
                 self.plan.site, self.plan.devices, self.plan.rate, self.plan.workers,
                 self.plan.host, self.plan.port)

    def counters(self) -> FleetCounters:
        values = list(self._counters[:])

        def total(slot: int) -> int:
            return sum(values[w * _SLOTS + slot] for w in range(self.plan.workers))
        dead = sum(1 for p in self._processes if p.exitcode not in (None, 0))
        # CLOCK_MONOTONIC is one clock for every process of the machine.
        starts = [values[w * _SLOTS + _STARTED_US] for w in range(self.plan.workers)]
        started = [s for s in starts if s]
        return FleetCounters(handed=total(_HANDED), acked=total(_ACKED),
                             errors=total(_ERRORS) + dead, readings=total(_READINGS),
                             workers_done=total(_DONE),
                             publishing_since=min(started) / 1e6 if started else None)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]

    @property
    def alive(self) -> int:
        return sum(1 for p in self._processes if p.is_alive())

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask every worker to finish (flushing its acknowledgements), then join them."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for process in self._processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("fleet worker %s did not stop in time; terminating", process.name)
                process.terminate()
                process.join(5)


def _work(plan: FleetPlan, worker: int, counters: SynchronizedArray[int],
          stop: multiprocessing.synchronize.Event) -> None:
    """A worker process: its slice of the fleet until ``stop`` (the parent handles Ctrl-C)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    base = worker * _SLOTS
    try:
        asyncio.run(_publish(plan, worker, counters, stop))
    except PublisherError as err:
        log.error("fleet worker %d stopped: %s", worker, err)
        counters[base + _ERRORS] += 1
    finally:
        counters[base + _DONE] = 1


async def _publish(plan: FleetPlan, worker: int,
                   counters: SynchronizedArray[int],
                   stop: multiprocessing.synchronize.Event) -> None:
    devices = fleet_devices(plan.site, plan.devices, rate=plan.rate, seed=plan.seed)
    share = plan.slice_of(worker)
    mine: Sequence[Device] = devices[share.start:share.stop]
    community = Community(mine, seed=plan.seed, epoch0=time.time(), speed=1.0,
                          topic_root=plan.topic_root)
    base = worker * _SLOTS
    publisher = WirePublisher(plan.host, plan.port, username=plan.username,
                              password=plan.password, window=plan.window,
                              client_id=f"shouwang-fleet-{plan.site}-{worker}-{plan.seed}")
    async with publisher:
        started = time.monotonic()
        counters[base + _STARTED_US] = int(started * 1e6)
        while not stop.is_set():
            now_s = time.monotonic() - started
            batch = community.due(now_s, limit=_BATCH)
            for message in batch:
                await publisher.publish(message.topic, message.payload,
                                        readings=message.readings)
            counters[base + _HANDED] = publisher.messages_sent
            counters[base + _ACKED] = publisher.messages_acked
            counters[base + _READINGS] = publisher.readings_acked
            counters[base + _ERRORS] = publisher.messages_rejected
            if len(batch) < _BATCH:
                # Caught up: sleep until the next report is due (short, to notice stop).
                await asyncio.sleep(min(0.05, max(0.0, community.next_due_s - now_s)))
            else:
                await asyncio.sleep(0)
        await publisher.flush(10.0)
    counters[base + _HANDED] = publisher.messages_sent
    counters[base + _ACKED] = publisher.messages_acked
    counters[base + _READINGS] = publisher.readings_acked
    counters[base + _ERRORS] = publisher.messages_rejected

"""The load fleet's plan: deterministic devices, a fair split, a registry ingest accepts."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from config.settings import load
from shouwang.catalog import DeviceType
from simulators.fleet import FleetPlan, fleet_devices
from simulators.publisher import PublisherError
from simulators.registry import write_registry
from simulators.wire import WirePublisher


def test_fleet_devices_are_seeded_mixed_and_paced_for_the_rate() -> None:
    devices = fleet_devices("north", 10_000, rate=2_000.0, seed=3)
    assert devices == fleet_devices("north", 10_000, rate=2_000.0, seed=3)
    assert [d.type for d in devices] != [d.type for d in fleet_devices("north", 10_000,
                                                                        rate=2_000.0, seed=4)]
    assert len({d.id for d in devices}) == 10_000
    mix = Counter(d.type for d in devices)
    assert set(mix) == set(DeviceType)
    assert 2_700 < mix[DeviceType.GAS] < 3_300 and 700 < mix[DeviceType.WATER] < 1_300
    # 10,000 devices each every 5 s make 2,000 messages/s.
    assert {d.report_interval_s for d in devices} == {5.0}
    with pytest.raises(ValueError):
        fleet_devices("north", 0, rate=1.0, seed=1)


def test_plan_slices_cover_every_device_once() -> None:
    plan = FleetPlan(site="s", devices=1001, rate=10.0, seed=1, workers=3, host="h", port=1)
    slices = [plan.slice_of(w) for w in range(3)]
    assert [len(s) for s in slices] == [334, 334, 333]
    assert [i for s in slices for i in s] == list(range(1001))
    assert FleetPlan.auto_workers(50_000, cpus=2) == 2
    assert FleetPlan.auto_workers(500, cpus=8) == 1
    with pytest.raises(ValueError):
        FleetPlan(site="s", devices=2, rate=1.0, seed=1, workers=3, host="h", port=1)


def test_written_registry_loads_as_config_with_every_device(tmp_path: Path) -> None:
    devices = fleet_devices("north", 500, rate=100.0, seed=2)
    path = tmp_path / "fleet.yaml"
    assert write_registry(path, {"north": "北区"}, devices) == 500
    settings = load(path)
    assert settings.device_map() == {d.id: d for d in devices}


def test_cli_writes_the_same_registry_the_fleet_publishes_as(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "shouwang.cli", "simulate", "--site", "north", "--devices", "300",
         "--rate", "60", "--seed", "5", "--write-config", str(path)],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    registry = load(path).device_map()
    assert registry == {d.id: d for d in fleet_devices("north", 300, rate=60.0, seed=5)}


async def test_wire_publisher_fails_fast_when_no_broker_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(PublisherError, match="cannot connect"):
            async with WirePublisher("127.0.0.1", port, client_id="nobody"):
                pass

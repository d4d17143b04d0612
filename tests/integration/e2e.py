"""Shared pieces of the end-to-end tests: a community, a gas leak, and the counts to check."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import orjson

from shouwang.wiring import ServiceRunner

DEVICE_TYPES = ("gas", "smoke", "water", "electrical", "wearable")
NORMAL = {
    "gas": {"lel": 0.8, "co": 1.0, "battery": 90.0},
    "smoke": {"smoke": 0.2, "temperature": 23.0, "alarm": 0.0},
    "water": {"level": 0.05},
    "electrical": {"residual_current": 30.0, "temperature": 31.0, "current": 12.0},
    "wearable": {"heart_rate": 72.0, "spo2": 97.0},
}
LEAK_DEVICE = "gas-leak"
LEAK_RAMP = (2.0, 6.0, 12.0, 20.0, 27.0, 33.0, 41.0, 52.0, 58.0, 60.0)  # %LEL
SINK_RECEIVERS = ("fire-station-sms", "loudspeakers")


def sink_receivers(sink_port: int) -> list[dict[str, Any]]:  # Any: YAML-shaped
    """The SINK_RECEIVERS, an SMS one and a broadcast one, both sending to the local sink on
    ``sink_port``."""
    return [
        {"name": "fire-station-sms", "channel": "sms",
         "urls": [f"json://127.0.0.1:{sink_port}/sms"]},
        {"name": "loudspeakers", "channel": "broadcast",
         "urls": [f"json://127.0.0.1:{sink_port}/broadcast"]},
    ]


def sink_alerting(sink_port: int, hazards: Sequence[str]) -> dict[str, Any]:  # Any: YAML-shaped
    """Alerting settings that send each of ``hazards`` from orange up to both
    ``sink_receivers``."""
    return {
        "receivers": sink_receivers(sink_port),
        "routes": [{"hazards": list(hazards), "min_severity": "orange",
                    "receivers": list(SINK_RECEIVERS)}],
    }


def community(sink_port: int) -> dict[str, Any]:  # Any: YAML-shaped settings
    devices = [{"id": LEAK_DEVICE, "type": "gas", "site": "sunshine", "building": "2号楼",
                "unit": "1单元", "floor": "3", "room": "301", "report_interval_s": 600}]
    devices += [{"id": f"{kind}-{i}", "type": kind, "site": "sunshine", "building": "1号楼",
                 "report_interval_s": 600} for kind in DEVICE_TYPES for i in range(4)]
    return {
        "sites": [{"id": "sunshine", "name": "阳光小区"}],
        "devices": devices,
        "alerting": sink_alerting(sink_port, ["*"]),
    }


def stream(root: str, settings: dict[str, Any],  # Any: YAML-shaped settings
           rounds: int = 10) -> tuple[list[tuple[str, bytes]], int]:
    """Normal readings from every device plus the leak ramp; returns (messages, readings)."""
    start = time.time() - rounds
    messages: list[tuple[str, bytes]] = []
    readings = 0
    for n in range(rounds):
        for device in settings["devices"]:
            values = dict(NORMAL[device["type"]])
            if device["id"] == LEAK_DEVICE:
                values["lel"] = LEAK_RAMP[n % len(LEAK_RAMP)]
            messages.append((f"{root}/sunshine/{device['id']}/telemetry",
                             orjson.dumps({"ts": start + n, "seq": n, "values": values})))
            readings += len(values)
    return messages, readings


async def eventually(probe: Callable[[], Awaitable[bool]], timeout_s: float = 30.0,
                     what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not await probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def services_running(runner: ServiceRunner, stop: asyncio.Event,
                           name: str) -> AsyncIterator[None]:
    """Runs ``runner``'s services in a task named ``name``; on the way out, even from a
    failed test, sets ``stop`` and waits for them all to end."""
    running = asyncio.create_task(runner.run(), name=name)
    try:
        yield
    finally:
        stop.set()
        await running

"""The detector worker end to end on the in-process bus and on a real Kafka broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from config.settings import DeviceConfig, Settings, SiteConfig
from detectors import DetectorService
from shouwang.bus import Bus, Consumer, MemoryBus, Message
from shouwang.bus.kafka import KafkaBus
from shouwang.catalog import DeviceType
from shouwang.codec import decode_detection, encode_readings
from shouwang.models import Reading, Severity

pytestmark = pytest.mark.integration

START = 1_764_120_000.0
RAMP = (0, 10, 20, 26, 30, 40, 52, 60, 47, 44, 30, 21, 19, 5)


@pytest.fixture(params=["memory", "kafka"])
async def bus(request: pytest.FixtureRequest, run_id: str) -> AsyncIterator[Bus]:
    if request.param == "memory":
        async with MemoryBus() as memory:
            yield memory
        return
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    async with KafkaBus(bootstrap, topic_prefix=f"{run_id}.") as kafka:
        yield kafka


def _settings() -> Settings:
    return Settings(
        sites=(SiteConfig(id="s1", name="测试小区"),),
        devices=(DeviceConfig(id="g1", type=DeviceType.GAS, site="s1", building="3号楼"),
                 DeviceConfig(id="g2", type=DeviceType.GAS, site="s1")),
    )


def _message(device_id: str, value: float, ts: float) -> tuple[str, bytes]:
    reading = Reading(ts=ts, device_id=device_id, site="s1", metric="lel", value=value,
                      received_at=ts)
    return device_id, encode_readings([reading])


async def _read_until(consumer: Consumer, count: int, timeout_s: float,
                      settle_s: float) -> list[Message]:
    """``count`` messages or the timeout, then whatever else arrives within ``settle_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    got: list[Message] = []
    while len(got) < count and loop.time() < deadline:
        batch = await consumer.batch(100, 0.2)
        await consumer.commit(batch)
        got += batch
    settle_until = loop.time() + settle_s
    while loop.time() < settle_until:
        batch = await consumer.batch(100, 0.2)
        await consumer.commit(batch)
        got += batch
    return got


async def test_gas_ramp_gives_exactly_the_level_changes_and_commits_offsets(bus: Bus) -> None:
    settings = _settings()
    ramp = [_message("g1", v, START + i) for i, v in enumerate(RAMP)]
    await bus.publish("readings", [
        *ramp[:7], _message("g2", 3.0, START), ("g1", b"\x00 not a bus message"),
        _message("ghost", 99.0, START), *ramp[7:],
    ])
    stop = asyncio.Event()
    worker = asyncio.create_task(
        DetectorService(settings, bus, clock=lambda: START + 100, poll_s=0.1).run(stop),
        name="test.detector-worker")
    try:
        async with bus.consumer(["detections"], "test-reader") as reader:
            got = await _read_until(reader, 4, timeout_s=30.0, settle_s=1.0)
    finally:
        stop.set()
        await worker

    found = [decode_detection(m.value) for m in got]
    assert [m.key for m in got] == ["g1"] * 4
    assert [(d.hazard, d.level, d.firing, d.severity, d.value) for d in found] == [
        ("gas", 1, True, Severity.ORANGE, 26),
        ("gas", 2, True, Severity.RED, 52),
        ("gas", 1, True, Severity.ORANGE, 44),
        ("gas", 0, False, Severity.ORANGE, 19),
    ]
    assert [d.reading_ts for d in found] == [START + RAMP.index(v) for v in (26, 52, 44, 19)]
    assert found[0].message == "可燃气体浓度 26 %LEL，超过一级报警值 25"

    # Everything the worker read was committed: the group's next member sees only new data.
    sentinel = _message("g2", 1.0, START + 200)
    await bus.publish("readings", [sentinel])
    async with bus.consumer(["readings"], settings.detectors.group) as successor:
        left = await _read_until(successor, 1, timeout_s=30.0, settle_s=0.5)
    assert [(m.key, m.value) for m in left] == [sentinel]

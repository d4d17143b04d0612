"""The bus contract, run against both implementations: in-process and real Kafka."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shouwang.bus import Bus, MemoryBus, Message
from shouwang.bus.kafka import KafkaBus

pytestmark = pytest.mark.integration

# Devices of one building share a partition (the wiring's building keys).
COLOCATE = {**{f"dev{i}": "site/building-a" for i in range(0, 7, 2)},
            **{f"dev{i}": "site/building-b" for i in range(1, 7, 2)}}


@pytest.fixture(params=["memory", "kafka"])
async def bus(request: pytest.FixtureRequest, run_id: str) -> AsyncIterator[Bus]:
    if request.param == "memory":
        instance: Bus = MemoryBus(partitions=4, colocate=COLOCATE)
    else:
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        instance = KafkaBus(bootstrap, topic_prefix=f"{run_id}.", partitions=4,
                            colocate=COLOCATE)
    async with instance:
        yield instance


async def _drain(consumer, expected: int, rounds: int = 60) -> list[Message]:  # type: ignore[no-untyped-def]
    got: list[Message] = []
    for _ in range(rounds):
        got.extend(await consumer.batch(1000, 0.5))
        if len(got) >= expected:
            break
    return got


async def test_keyed_messages_keep_their_order_per_key(bus: Bus) -> None:
    items = [(f"dev{i % 7}", f"{i % 7}:{i}".encode()) for i in range(700)]
    await bus.publish("readings", items)
    async with bus.consumer(["readings"], "order") as consumer:
        got = await _drain(consumer, len(items))
    assert len(got) == len(items)
    per_key: dict[str, list[int]] = {}
    for m in got:
        assert m.topic == "readings"
        assert m.value.decode().split(":")[0] == m.key[3:]
        per_key.setdefault(m.key, []).append(int(m.value.decode().split(":")[1]))
    assert set(per_key) == {f"dev{i}" for i in range(7)}
    for sequence in per_key.values():
        assert sequence == sorted(sequence)
    partitions = {m.key: {x.partition for x in got if x.key == m.key} for m in got}
    assert all(len(p) == 1 for p in partitions.values()), "one key must stay on one partition"
    # Colocated keys land together, where partition_for says (detector workers use it to
    # know which devices they own).
    for key, (partition,) in partitions.items():
        assert partition == bus.partition_for(key) == bus.partition_for(COLOCATE[key])
    assert {partitions[k] == partitions["dev0"] for k in ("dev2", "dev4", "dev6")} == {True}
    assert {partitions[k] == partitions["dev1"] for k in ("dev3", "dev5")} == {True}


async def test_uncommitted_messages_come_again_committed_ones_do_not(bus: Bus) -> None:
    await bus.publish("detections", [(f"k{i}", str(i).encode()) for i in range(40)])
    async with bus.consumer(["detections"], "redeliver") as consumer:
        first = await _drain(consumer, 40)
        assert len(first) == 40
        done = [m for m in first if int(m.value) % 2 == 0]
        # Commit per partition only a prefix, so the rest must come again.
        by_partition: dict[int, list[Message]] = {}
        for m in first:
            by_partition.setdefault(m.partition, []).append(m)
        committed = [msgs[len(msgs) // 2 - 1] for msgs in by_partition.values() if len(msgs) > 1]
        await consumer.commit(committed)
    expected_again = {m.value for part in by_partition.values()
                      for m in part if m.offset > max(c.offset for c in committed
                                                      if c.partition == m.partition)}
    async with bus.consumer(["detections"], "redeliver") as consumer:
        again = await _drain(consumer, len(expected_again))
        assert {m.value for m in again} == expected_again
        await consumer.commit(again)
    async with bus.consumer(["detections"], "redeliver") as consumer:
        assert await consumer.batch(1000, 1.0) == []
    assert done  # the stream had both halves


async def test_each_group_gets_every_message(bus: Bus) -> None:
    async with bus.consumer(["rejects"], "writer") as writer, \
            bus.consumer(["rejects"], "auditor") as auditor:
        await bus.publish("rejects", [("a", b"1"), ("b", b"2"), ("c", b"3")])
        for consumer in (writer, auditor):
            got = await _drain(consumer, 3)
            assert sorted(m.value for m in got) == [b"1", b"2", b"3"]
            await consumer.commit(got)


async def test_live_viewer_sees_only_new_messages(bus: Bus) -> None:
    await bus.publish("alert-updates", [("1", b"old")])
    async with bus.consumer(["alert-updates"], "viewer", from_latest=True) as viewer:
        await viewer.batch(10, 1.0)  # joins the group; Kafka assigns partitions here
        await bus.publish("alert-updates", [("2", b"new")])
        got = await _drain(viewer, 1)
    assert [m.value for m in got] == [b"new"]

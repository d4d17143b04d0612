"""The live fan-out: one bus consumer, every viewer gets every update, no viewer blocks it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Self

import pytest

from console.live import ALERT_UPDATES, AlertFeed, TooManyViewers, Viewer
from shouwang.bus import BusError, MemoryBus, Message
from shouwang.codec import encode_alert
from shouwang.models import Alert, AlertStatus, DetectionKind, Severity


def _alert(alert_id: int, status: AlertStatus = AlertStatus.OPEN) -> Alert:
    return Alert(id=alert_id, site="s1", device_id=f"d{alert_id}", hazard="gas",
                 kind=DetectionKind.HAZARD, severity=Severity.RED, status=status,
                 opened_at=1000.0)


@asynccontextmanager
async def _running(feed: AlertFeed) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop), name="test.feed")
    try:
        async with asyncio.timeout(2):
            await feed.ready.wait()
        yield stop
    finally:
        stop.set()
        async with asyncio.timeout(2):
            await task


async def _publish(bus: MemoryBus, *alerts: Alert) -> None:
    await bus.publish(ALERT_UPDATES, [(str(a.id), encode_alert(a)) for a in alerts])


async def test_every_viewer_gets_every_update_in_order() -> None:
    async with MemoryBus() as bus:
        feed = AlertFeed(bus)
        async with _running(feed):
            with feed.subscribe() as first, feed.subscribe() as second:
                assert feed.viewers == 2
                await _publish(bus, _alert(1), _alert(1, AlertStatus.ACKNOWLEDGED))
                for viewer in (first, second):
                    async with asyncio.timeout(2):
                        got = [await viewer.get(), await viewer.get()]
                    assert [(a.id, a.status) for a in got if a] == [
                        (1, AlertStatus.OPEN), (1, AlertStatus.ACKNOWLEDGED)]
            assert feed.viewers == 0


async def test_feed_starts_at_the_latest_update() -> None:
    async with MemoryBus() as bus:
        await _publish(bus, _alert(1))  # before the console started: not replayed
        feed = AlertFeed(bus)
        async with _running(feed):
            with feed.subscribe() as viewer:
                await _publish(bus, _alert(2))
                async with asyncio.timeout(2):
                    got = await viewer.get()
                assert got is not None and got.id == 2


async def test_slow_viewer_loses_oldest_without_holding_back_others() -> None:
    async with MemoryBus() as bus:
        feed = AlertFeed(bus, viewer_queue=3)
        async with _running(feed):
            with feed.subscribe() as slow, feed.subscribe() as quick:
                received: list[int] = []

                async def read_quickly() -> None:
                    while len(received) < 10:
                        alert = await quick.get()
                        assert alert is not None
                        received.append(alert.id)

                reader = asyncio.create_task(read_quickly())
                for alert_id in range(10):
                    await _publish(bus, _alert(alert_id))
                    await asyncio.sleep(0)
                async with asyncio.timeout(2):
                    await reader
                assert received == list(range(10))

                async with asyncio.timeout(2):
                    kept = [await slow.get() for _ in range(3)]
                assert [a.id for a in kept if a] == [7, 8, 9]  # the newest survive
                assert slow.take_lost() == 7
                assert slow.take_lost() == 0


def test_viewer_drops_oldest_when_full() -> None:
    viewer = Viewer(maxsize=2)
    for alert_id in (1, 2, 3, 4):
        viewer.offer(_alert(alert_id))
    assert viewer.take_lost() == 2


async def test_close_ends_every_viewer_and_later_ones() -> None:
    async with MemoryBus() as bus:
        feed = AlertFeed(bus)
        with feed.subscribe() as viewer:
            viewer.offer(_alert(5))
            feed.close()
            assert (await viewer.get()) is not None  # what was queued still comes first
            assert await viewer.get() is None
            assert await viewer.get() is None  # stays closed
        with feed.subscribe() as late:
            assert await late.get() is None


def test_viewer_limit() -> None:
    feed = AlertFeed(MemoryBus(), max_viewers=1)
    with feed.subscribe(), pytest.raises(TooManyViewers), feed.subscribe():
        pass
    with feed.subscribe():  # the first one left: room again
        pass


async def test_undecodable_message_is_skipped() -> None:
    async with MemoryBus() as bus:
        feed = AlertFeed(bus)
        async with _running(feed):
            with feed.subscribe() as viewer:
                await bus.publish(ALERT_UPDATES, [("9", b"not json"), ("3", encode_alert(
                    _alert(3)))])
                async with asyncio.timeout(2):
                    got = await viewer.get()
                assert got is not None and got.id == 3


class _FlakyBus:
    """Fails to join the first ``failures`` times, then behaves like the MemoryBus."""

    def __init__(self, inner: MemoryBus, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.attempts = 0

    def consumer(self, topics: Sequence[str], group: str, *,
                 from_latest: bool = False) -> _FlakyConsumer:
        self.attempts += 1
        fail = self.attempts <= self.failures
        return _FlakyConsumer(self.inner.consumer(topics, group, from_latest=from_latest), fail)


class _FlakyConsumer:
    def __init__(self, inner: object, fail: bool) -> None:
        self.inner = inner
        self.fail = fail

    async def __aenter__(self) -> Self:
        if self.fail:
            raise BusError("broker unreachable")
        await self.inner.__aenter__()  # type: ignore[attr-defined]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.inner.__aexit__(exc_type, exc, tb)  # type: ignore[attr-defined]

    async def batch(self, max_records: int = 1000, timeout_s: float = 0.5) -> list[Message]:
        result: list[Message] = await self.inner.batch(max_records, timeout_s)  # type: ignore[attr-defined]
        return result


async def test_feed_rejoins_after_bus_errors() -> None:
    async with MemoryBus() as inner:
        flaky = _FlakyBus(inner, failures=2)
        feed = AlertFeed(flaky, retry_max_s=0.05)  # type: ignore[arg-type]
        async with _running(feed):
            assert flaky.attempts == 3
            with feed.subscribe() as viewer:
                await _publish(inner, _alert(4))
                async with asyncio.timeout(2):
                    got = await viewer.get()
                assert got is not None and got.id == 4

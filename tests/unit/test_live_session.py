"""Ending live viewers by session, and the stream's session check when the database fails."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest

from console.live import AlertFeed, Viewer
from console.live_session import SessionWatch
from console.users import Role, Session, User
from shouwang.bus import MemoryBus
from shouwang.models import Alert, AlertStatus, DetectionKind, Location, Severity

NOW = 1_764_124_800.0
SESSION = Session(user=User(id=1, name="李值班", role=Role.DUTY_OFFICER, sites=("*",)),
                  csrf_token="csrf", expires_at=NOW + 600)


def _alert(alert_id: int) -> Alert:
    return Alert(id=alert_id, site="s1", device_id="s-7", hazard="smoke",
                 kind=DetectionKind.HAZARD, severity=Severity.RED, status=AlertStatus.OPEN,
                 opened_at=NOW, location=Location(building="7号楼"), last_value=9.5,
                 message="烟雾")


async def test_ending_a_session_ends_only_its_viewers_at_once() -> None:
    async with MemoryBus() as bus:
        feed = AlertFeed(bus, viewer_queue=4)
        with feed.subscribe(b"a") as first, feed.subscribe(b"a") as second, \
                feed.subscribe(b"b") as other:
            feed.deliver(_alert(1))
            assert feed.end_session(b"a") == 2
            feed.deliver(_alert(2))
            for ended in (first, second):
                assert ended.session_ended
                assert await ended.get() is None  # what was queued is not sent any more
                assert await ended.get() is None
            assert not other.session_ended
            assert [(await other.get()), (await other.get())] == [_alert(1), _alert(2)]
            assert feed.end_session(b"nobody") == 0


class _Context:
    """What SessionWatch reads of the console context: a pool that cannot connect."""

    def __init__(self) -> None:
        self.now = NOW
        self.ping_s = 0.01
        self.lookups = 0

    def clock(self) -> float:
        return self.now

    @property
    def pool(self) -> _Context:
        return self

    @asynccontextmanager
    async def connection(self, timeout: float) -> AsyncIterator[Any]:
        self.lookups += 1
        raise psycopg.OperationalError("connection refused")
        yield  # pragma: no cover


async def test_database_outage_keeps_the_stream_until_the_session_expires(
        caplog: pytest.LogCaptureFixture) -> None:
    context = _Context()
    viewer = Viewer(4)
    watch = SessionWatch(context, "token", SESSION, viewer)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="console.live_session"):
        assert await watch.check()
        assert await watch.check()
    assert context.lookups == 2 and not viewer.session_ended
    assert len(caplog.records) == 1  # once per outage, not at every ping
    context.now = SESSION.expires_at
    assert not await watch.check()
    assert context.lookups == 2  # expired: no need to ask the database
    assert viewer.session_ended and await viewer.get() is None


async def test_watch_runs_until_the_session_is_gone() -> None:
    context = _Context()
    viewer = Viewer(4)
    context.now = SESSION.expires_at + 1
    watch = SessionWatch(context, "token", SESSION, viewer)  # type: ignore[arg-type]
    await watch.run()  # returns once the check fails
    assert viewer.session_ended

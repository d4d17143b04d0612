"""The apprise notifier over real HTTP: the local sink, a dead port, a server that never answers."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator

import pytest

from alerting.notifiers import AppriseNotifier, NotifyError
from config.settings import Receiver
from shouwang.sink import LocalSink
from tests.integration.local_servers import hanging_server

pytestmark = pytest.mark.integration


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A server that accepts connections and never answers."""
    async with hanging_server() as port:
        yield port


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


async def test_sends_title_and_body(sink: LocalSink) -> None:
    receiver = Receiver(name="station", channel="sms",
                        urls=(f"json://127.0.0.1:{sink.port}/sms",))
    await AppriseNotifier().send(receiver, "【红色预警】阳光小区 燃气泄漏", "正文", timeout_s=5)
    [message] = sink.received("sms")
    assert (message.title, message.body) == ("【红色预警】阳光小区 燃气泄漏", "正文")


async def test_server_error_is_retryable_and_says_why(sink: LocalSink) -> None:
    sink.fail_next = 1
    receiver = Receiver(name="station", channel="sms",
                        urls=(f"json://127.0.0.1:{sink.port}/sms",))
    with pytest.raises(NotifyError, match="500") as caught:
        await AppriseNotifier().send(receiver, "t", "b", timeout_s=5)
    assert caught.value.retryable


async def test_one_live_url_is_a_delivery(sink: LocalSink, silent_port: int) -> None:
    receiver = Receiver(name="station", channel="sms", urls=(
        f"json://127.0.0.1:{_dead_port()}/sms", f"json://127.0.0.1:{silent_port}/sms",
        f"json://127.0.0.1:{sink.port}/sms"))
    await AppriseNotifier().send(receiver, "t", "b", timeout_s=0.5)
    assert len(sink.received("sms")) == 1


async def test_a_silent_server_is_cut_off_at_the_timeout(silent_port: int) -> None:
    receiver = Receiver(name="station", channel="sms",
                        urls=(f"json://127.0.0.1:{silent_port}/sms",))
    started = time.monotonic()
    with pytest.raises(NotifyError, match=r"no answer within 0\.5s") as caught:
        await AppriseNotifier().send(receiver, "t", "b", timeout_s=0.5)
    assert time.monotonic() - started < 1.5
    assert caught.value.retryable

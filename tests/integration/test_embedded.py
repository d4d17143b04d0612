"""The embedded default's servers really start: PostgreSQL from the pip wheel, and both brokers."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest

from shouwang.embedded import EmbeddedBroker, EmbeddedPostgres
from shouwang.embedded.broker import DEFAULT_SEARCH_PATH
from shouwang.embedded.postgres import EmbeddedPostgresError, find_bin_dir

pytestmark = pytest.mark.integration


async def test_postgres_select_1_and_restarts(data_root: Path) -> None:
    assert find_bin_dir().exists(), "the pip-installed PostgreSQL server is a dependency"
    data = data_root / "pg"

    async with EmbeddedPostgres(data) as pg:  # cold: initdb
        assert pg.dsn.startswith("postgresql://postgres:")
        async with await psycopg.AsyncConnection.connect(pg.dsn) as conn:
            cur = await conn.execute("select 1, current_database()")
            assert await cur.fetchone() == (1, "shouwang")
            await conn.execute("create table kept (v int)")
            await conn.commit()
    assert not (data / "postmaster.pid").exists()

    # warm start on the same cluster, then simulate a crash: kill -9 the postmaster
    async with EmbeddedPostgres(data) as pg:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 9)

    async with EmbeddedPostgres(data) as pg:  # restart after kill -9
        conn = await psycopg.AsyncConnection.connect(pg.dsn)
        async with conn:
            cur = await conn.execute("select count(*) from kept")
            assert await cur.fetchone() == (0,)


async def test_postgres_second_process_on_same_data_dir_is_refused(data_root: Path) -> None:
    async with EmbeddedPostgres(data_root / "pg"):
        with pytest.raises(EmbeddedPostgresError, match="in use"):
            await EmbeddedPostgres(data_root / "pg").start()


def _qos1_round_trip(port: int, count: int) -> list[bytes]:
    """Subscribe, publish ``count`` QoS 1 messages, return what the subscriber received."""
    received: list[bytes] = []
    all_in = threading.Event()
    subscribed = threading.Event()

    def on_message(client: object, userdata: object, msg: object) -> None:
        received.append(msg.payload)  # type: ignore[attr-defined]
        if len(received) == count:
            all_in.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-sub")
    sub.on_message = on_message
    sub.on_subscribe = lambda *args: subscribed.set()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-pub")
    try:
        sub.connect("127.0.0.1", port)
        sub.loop_start()
        sub.subscribe("shouwang/test", qos=1)
        assert subscribed.wait(10)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        infos = [pub.publish("shouwang/test", f"m{i}", qos=1) for i in range(count)]
        for info in infos:
            info.wait_for_publish(10)  # PUBACK from the broker
            assert info.is_published()
        assert all_in.wait(10), f"got {len(received)} of {count}"
    finally:
        for client in (pub, sub):
            client.disconnect()
            client.loop_stop()
    return received


@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
async def test_broker_qos1_round_trip(kind: str, data_root: Path) -> None:
    # scripts/services.sh installs mosquitto; amqtt is a dependency: both must be here.
    if kind == "mosquitto":
        assert shutil.which("mosquitto", path=DEFAULT_SEARCH_PATH), "mosquitto is not installed"
    broker = EmbeddedBroker(
        port=0, data_dir=data_root / "mqtt", prefer_mosquitto=kind == "mosquitto"
    )
    async with broker:
        assert broker.kind == kind
        received = await asyncio.to_thread(_qos1_round_trip, broker.port, 50)
    assert received == [f"m{i}".encode() for i in range(50)]

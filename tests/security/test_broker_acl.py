"""Against the real broker's authenticated listener: who may connect, publish and subscribe.

A forged publish is checked by what a subscriber receives, not by the PUBACK (Mosquitto
acknowledges a denied QoS 1 publish so as not to tell the client what exists). Forged
messages go out before a legitimate "fence" message from the same client; the broker keeps
one client's messages in order, so once the fence arrives anything forged would have too.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from ingest.mqtt_source import MqttSource
from tests.security.conftest import AuthBroker
from tests.security.mqtt_client import Client

pytestmark = pytest.mark.integration

ROOT = "shouwang/v1"


def _topic(broker: AuthBroker, device: str, channel: str = "telemetry", *,
           site: str | None = None) -> str:
    return f"{ROOT}/{site or broker.sites[device]}/{device}/{channel}"


def _login(broker: AuthBroker, user: str) -> Client:
    return Client(broker.host, broker.port, username=user, password=broker.passwords[user])


def test_an_anonymous_client_is_refused(mqtt_auth: AuthBroker) -> None:
    with Client(mqtt_auth.host, mqtt_auth.port) as anonymous:
        assert not anonymous.accepted
        assert anonymous.connect_reason is not None
        assert anonymous.connect_reason.value in (0x86, 0x87)  # bad credentials / not authorised


def test_a_wrong_password_or_unknown_user_is_refused(mqtt_auth: AuthBroker) -> None:
    with Client(mqtt_auth.host, mqtt_auth.port, username="test-dev-a1",
                password="not-the-password") as wrong:
        assert not wrong.accepted
    with Client(mqtt_auth.host, mqtt_auth.port, username="nobody", password="x") as unknown:
        assert not unknown.accepted
    with _login(mqtt_auth, "test-dev-a1") as right:
        assert right.accepted


def test_a_device_cannot_publish_as_another_device(mqtt_auth: AuthBroker) -> None:
    marker = uuid.uuid4().hex
    forged_topics = [
        _topic(mqtt_auth, "test-dev-a2"),                      # a neighbour on its site
        _topic(mqtt_auth, "test-dev-a2", "event"),
        _topic(mqtt_auth, "test-dev-a2", "status"),
        _topic(mqtt_auth, "test-dev-b1"),                      # a device on another site
        _topic(mqtt_auth, "test-dev-a1", site="test-site-b"),  # itself, under another site
        f"{ROOT}/test-site-a/test-dev-a1/command",              # not one of its channels
        f"{ROOT}/test-site-a/unregistered/telemetry",
    ]
    with _login(mqtt_auth, "test-ingest") as ingest, _login(mqtt_auth, "test-dev-a1") as device:
        assert ingest.accepted and device.accepted
        assert not ingest.subscribe(f"{ROOT}/#").is_failure
        for topic in forged_topics:
            device.publish(topic, f"forged {marker} {topic}".encode())
        own = [_topic(mqtt_auth, "test-dev-a1", channel) for channel in
               ("telemetry", "event", "status")]
        for topic in own:
            device.publish(topic, f"own {marker} {topic}".encode())
        got = ingest.wait_for(f"own {marker} {own[-1]}".encode())
    mine = [(topic, body) for topic, body in got if marker.encode() in body]
    assert [topic for topic, _ in mine] == own
    assert not [body for _, body in mine if body.startswith(b"forged")]


def test_a_device_cannot_subscribe_to_other_devices_data(mqtt_auth: AuthBroker) -> None:
    # Mosquitto 2.0's acl_file grants the SUBSCRIBE itself and checks "read" access on
    # every message it would deliver, so the proof is that nothing is delivered.
    marker = uuid.uuid4().hex.encode()
    filters = [f"{ROOT}/#", f"{ROOT}/test-site-a/+/telemetry", _topic(mqtt_auth, "test-dev-a2"),
               _topic(mqtt_auth, "test-dev-a1"), f"$share/spy/{ROOT}/#", "#"]
    with _login(mqtt_auth, "test-dev-a1") as spy, _login(mqtt_auth, "test-ingest") as ingest, \
            _login(mqtt_auth, "test-dev-a2") as victim:
        for topic_filter in filters:
            spy.subscribe(topic_filter)
        assert not ingest.subscribe(f"{ROOT}/#").is_failure
        victim.publish(_topic(mqtt_auth, "test-dev-a2"), marker)
        spy.publish(_topic(mqtt_auth, "test-dev-a1"), marker + b" own")
        ingest.wait_for(marker + b" own")
        # The broker routes one message to all its subscribers in one pass; both have been
        # routed by now. A short quiet window covers the spy's socket and client thread.
        time.sleep(1.0)
        assert spy.received == []


async def test_the_ingest_service_account_reads_every_device_through_shared_subscriptions(
        mqtt_auth: AuthBroker, run_id: str) -> None:
    marker = uuid.uuid4().hex.encode()
    async with MqttSource(host=mqtt_auth.host, port=mqtt_auth.port,
                          client_id=f"{run_id}-ingest", topic_root=ROOT, share_group=run_id,
                          username="test-ingest",
                          password=mqtt_auth.passwords["test-ingest"]) as source:
        with _login(mqtt_auth, "test-dev-b1") as device:
            device.publish(_topic(mqtt_auth, "test-dev-b1"), marker)
        deadline = asyncio.get_running_loop().time() + 15
        seen: list[bytes] = []
        while marker not in seen and asyncio.get_running_loop().time() < deadline:
            seen += [m.payload for m in await source.take(100, 1.0)]
        assert marker in seen

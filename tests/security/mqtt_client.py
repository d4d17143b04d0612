"""A small blocking paho client for the broker security tests: connect, subscribe, collect."""

from __future__ import annotations

import ssl
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

TIMEOUT_S = 15.0


class Client:
    """One MQTT v5 connection; ``connect_reason`` is the broker's CONNACK answer."""

    def __init__(self, host: str, port: int, *, username: str | None = None,
                 password: str | None = None, ca_file: Path | None = None) -> None:
        self._host = host
        self._port = port
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"sec-{uuid.uuid4().hex[:10]}",
                                   protocol=mqtt.MQTTv5)
        if username is not None:
            self._client.username_pw_set(username, password)
        if ca_file is not None:
            self._client.tls_set(ca_certs=str(ca_file), cert_reqs=ssl.CERT_REQUIRED)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._connack = threading.Event()
        self._lock = threading.Lock()
        self._subacks: dict[int, list[ReasonCode]] = {}
        self.connect_reason: ReasonCode | None = None
        self.received: list[tuple[str, bytes]] = []

    def __enter__(self) -> Self:
        self._client.connect(self._host, self._port, keepalive=30)
        self._client.loop_start()
        if not self._connack.wait(TIMEOUT_S):
            raise TimeoutError("no CONNACK")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def accepted(self) -> bool:
        return self.connect_reason is not None and not self.connect_reason.is_failure

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        self.connect_reason = reason
        self._connack.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason: ReasonCode, properties: Any) -> None:
        if self.connect_reason is None:
            self.connect_reason = reason
        self._connack.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.append((msg.topic, bytes(msg.payload)))

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reason_codes: list[ReasonCode], properties: Any) -> None:
        with self._lock:
            self._subacks[mid] = reason_codes

    def subscribe(self, topic: str) -> ReasonCode:
        """Subscribe at QoS 1 and return the broker's SUBACK reason for it."""
        result, mid = self._client.subscribe(topic, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS and mid is not None
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            with self._lock:
                if mid in self._subacks:
                    return self._subacks[mid][0]
            time.sleep(0.01)
        raise TimeoutError(f"no SUBACK for {topic}")

    def publish(self, topic: str, payload: bytes) -> None:
        info = self._client.publish(topic, payload, qos=1)
        info.wait_for_publish(TIMEOUT_S)

    def wait_for(self, payload: bytes) -> list[tuple[str, bytes]]:
        """Wait until ``payload`` arrives; return everything received up to then."""
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            with self._lock:
                for i, (_, body) in enumerate(self.received):
                    if body == payload:
                        return self.received[: i + 1]
            time.sleep(0.01)
        raise TimeoutError(f"{payload!r} never arrived")

"""A steady community load with one gas leak, for the Kafka-path fault tests.

Every round each quiet gas detector reports battery and signal, the leaking one reports
%LEL (normal, then a sudden leak at ``leak_round``), and every ``ghost_every`` rounds an
unregistered device reports once, which ingest must reject. Like real firmware, every
message is QoS 1 and resent until the broker acknowledges it, so "published" is exact.
The rate can step up for a burst (``burst``: first round, last round, factor).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

__all__ = ["GHOST", "LEAK_DEVICE", "QUIET_DEVICES", "SITE", "Fleet", "Published"]

SITE = "sunshine"
LEAK_DEVICE = "gas-leak"
QUIET_DEVICES = tuple(f"gas-{i}" for i in range(9))
GHOST = "ghost-1"  # not in the registry: every message from it is a reject


@dataclass(frozen=True, slots=True, kw_only=True)
class Published:
    """What the broker acknowledged, in the units the database stores."""

    readings: int
    rejects: int
    messages: int


class Fleet:
    def __init__(self, port: int, root: str, rounds: int, *, rate_hz: float = 5.0,
                 leak_round: int, ghost_every: int = 10,
                 burst: tuple[int, int, float] | None = None,
                 timeout_s: float = 120.0) -> None:
        self._port = port
        self._root = root
        self.rounds = rounds
        self._rate_hz = rate_hz
        self._leak_round = leak_round
        self._ghost_every = ghost_every
        self._burst = burst
        self._timeout_s = timeout_s
        self._t0 = time.time()
        self.rounds_acked = 0
        self.published_readings = 0
        self.published_rejects = 0
        self.published_messages = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fault.fleet", daemon=True)
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"fault-fleet-{uuid.uuid4().hex[:8]}",
                                   protocol=mqtt.MQTTv311, clean_session=False)
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._client.max_inflight_messages_set(200)
        self._client.max_queued_messages_set(0)

    def start(self) -> None:
        self._client.connect("127.0.0.1", self._port, keepalive=10)
        self._client.loop_start()
        self._thread.start()

    def join(self) -> Published:
        self._thread.join(self._timeout_s + 10)
        self._client.disconnect()
        self._client.loop_stop()
        if self.error is not None:
            raise self.error
        return Published(readings=self.published_readings, rejects=self.published_rejects,
                         messages=self.published_messages)

    def round_messages(self, n: int) -> list[tuple[str, bytes, int, int]]:
        """(topic, payload, readings, rejects) of round ``n``; ``ts`` is fixed per seq."""
        ts = self._t0 + n * 0.01
        out = []
        for i, device in enumerate(QUIET_DEVICES):
            # Varying values: a constant signal would be reported as a stuck sensor.
            values = {"battery": 90.0 - (n + i) % 7 * 0.1, "rssi": -60.0 - (n + i) % 5}
            out.append((f"{self._root}/{SITE}/{device}/telemetry",
                        orjson.dumps({"ts": ts, "seq": n, "values": values}), 2, 0))
        lel = 55.0 + n % 5 if n >= self._leak_round else 0.5 + n % 10 * 0.1
        out.append((f"{self._root}/{SITE}/{LEAK_DEVICE}/telemetry",
                    orjson.dumps({"ts": ts, "seq": n, "values": {"lel": lel}}), 1, 0))
        if n % self._ghost_every == 0:
            out.append((f"{self._root}/{SITE}/{GHOST}/telemetry",
                        orjson.dumps({"ts": ts, "seq": n, "values": {"lel": 1.0}}), 0, 1))
        return out

    def _interval(self, n: int) -> float:
        if self._burst and self._burst[0] <= n < self._burst[1]:
            return 1.0 / (self._rate_hz * self._burst[2])
        return 1.0 / self._rate_hz

    def _send(self, topic: str, body: bytes) -> mqtt.MQTTMessageInfo:
        return self._client.publish(topic, body, qos=1)

    def _run(self) -> None:
        try:
            deadline = time.monotonic() + self._timeout_s
            pending: dict[int, tuple[str, bytes, int, int, mqtt.MQTTMessageInfo]] = {}
            key = 0
            next_at = time.monotonic()
            n = 0
            while n < self.rounds or pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(pending)} messages never acknowledged")
                if n < self.rounds and time.monotonic() >= next_at:
                    for topic, body, readings, rejects in self.round_messages(n):
                        pending[key] = (topic, body, readings, rejects, self._send(topic, body))
                        key += 1
                    next_at += self._interval(n)
                    n += 1
                for k, (topic, body, readings, rejects, info) in list(pending.items()):
                    if info.rc != mqtt.MQTT_ERR_SUCCESS:
                        # Not connected when sent: send it again once we are.
                        if self._client.is_connected():
                            pending[k] = (topic, body, readings, rejects, self._send(topic, body))
                    elif info.is_published():
                        self.published_readings += readings
                        self.published_rejects += rejects
                        self.published_messages += 1
                        del pending[k]
                self.rounds_acked = n if not pending else self.rounds_acked
                time.sleep(0.002)
        except BaseException as err:  # handed to the test thread by join()
            self.error = err

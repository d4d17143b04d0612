"""A steady device load for fault tests: seq-numbered QoS 1 telemetry, retried until PUBACK.

Like real firmware, the device keeps unacknowledged messages and sends them again after a
reconnect, so "published" means "the broker acknowledged it" and the test can count
published, landed, lost and duplicated exactly.
"""

from __future__ import annotations

import threading
import time
import uuid

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

__all__ = ["DevicePublisher"]


class DevicePublisher:
    """Publishes seq ``0..count-1`` to ``topic`` in chunks from a background thread."""

    def __init__(self, port: int, topic: str, count: int, *, chunk: int = 100,
                 pause_s: float = 0.01, timeout_s: float = 120.0) -> None:
        self._port = port
        self._topic = topic
        self._count = count
        self._chunk = chunk
        self._pause_s = pause_s
        self._timeout_s = timeout_s
        self.acked: set[int] = set()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fault.device", daemon=True)
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"fault-dev-{uuid.uuid4().hex[:8]}",
                                   protocol=mqtt.MQTTv311, clean_session=False)
        self._client.reconnect_delay_set(min_delay=0.05, max_delay=0.5)
        self._client.max_inflight_messages_set(100)
        self._client.max_queued_messages_set(0)

    def start(self) -> None:
        self._client.connect("127.0.0.1", self._port, keepalive=10)
        self._client.loop_start()
        self._thread.start()

    def join(self) -> None:
        self._thread.join(self._timeout_s + 10)
        self._client.disconnect()
        self._client.loop_stop()
        if self.error is not None:
            raise self.error

    def _send(self, seq: int, now: float) -> mqtt.MQTTMessageInfo:
        body = orjson.dumps({"ts": now + seq * 0.001, "seq": seq,
                             "values": {"lel": float(seq % 20)}})
        return self._client.publish(self._topic, body, qos=1)

    def _run(self) -> None:
        try:
            deadline = time.monotonic() + self._timeout_s
            now = time.time()
            for first in range(0, self._count, self._chunk):
                pending = {seq: self._send(seq, now)
                           for seq in range(first, min(first + self._chunk, self._count))}
                while pending:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{len(pending)} messages never acknowledged")
                    for seq, info in list(pending.items()):
                        if info.rc != mqtt.MQTT_ERR_SUCCESS:
                            # Not connected when sent: send it again once we are.
                            if self._client.is_connected():
                                pending[seq] = self._send(seq, now)
                        elif info.is_published():
                            self.acked.add(seq)
                            del pending[seq]
                    if pending:
                        time.sleep(0.01)
                time.sleep(self._pause_s)  # a steady rate, not a tight loop
        except BaseException as err:  # handed to the test thread by join()
            self.error = err

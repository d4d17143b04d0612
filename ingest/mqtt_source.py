"""The MQTT side of ingest: a paho-mqtt v5 client with a persistent session and manual acks.

paho's network loop runs in its own thread; ``on_message`` only appends to a buffer,
and the asyncio side drains it in batches. A message is acknowledged (PUBACK) only
when ``ack()`` is called after the next durable hop has it, so a crash before that
makes the broker deliver it again. The broker's receive-maximum bounds how many
unacknowledged messages can pile up here: that is the flow control.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ingest.models import RawMessage

__all__ = ["MqttSource", "MqttSourceError"]

log = logging.getLogger(__name__)

_SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker keeps our queue through a week-long outage
_RECEIVE_MAXIMUM = 65_535          # MQTT v5's largest in-flight window
_RECV_CHUNK = 256 * 1024           # one recv() serves hundreds of small PUBLISH packets
_READ_BURST = 2000                 # packets per wake-up before writes (PUBACKs) get a turn
_FLUSH_ACKS_S = 5.0                # longest wait for queued PUBACKs when closing


class MqttSourceError(RuntimeError):
    """The broker refused us or could not be reached in time."""


class _BurstReadingClient(mqtt.Client):
    """paho's client with a cheaper receive path; everything else is paho's own.

    Stock paho does one select() and three or four recv() calls per received packet
    (command byte, length bytes one by one, body) and builds several objects per PUBLISH;
    at thousands of messages a second that is most of ingest's CPU. Here the socket is
    read in large chunks, many packets per wake-up, and plain PUBLISH packets are parsed
    directly. Received bytes are kept in a buffer tied to the socket they came from, so a
    reconnect never sees stale bytes.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rx_sock: object = None
        self._rx = memoryview(b"")
        # Called as (topic, payload, mid, qos) for plain QoS 0/1 PUBLISH packets.
        self.on_plain_publish: Callable[[str, bytes, int, int], None] | None = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rx_sock is not self._sock:
            self._rx_sock, self._rx = self._sock, memoryview(b"")
        if not self._rx:
            data = super()._sock_recv(_RECV_CHUNK)  # raises BlockingIOError when dry
            if not data:
                return data  # the peer closed the connection
            self._rx = memoryview(data)
        chunk, self._rx = self._rx[:bufsize], self._rx[bufsize:]
        return bytes(chunk)

    def _buffered(self) -> bool:
        return self._rx_sock is self._sock and len(self._rx) > 0

    def _handle_publish(self) -> MQTTErrorCode:
        # paho builds a Properties object, an MQTTMessage and a debug log line for every
        # PUBLISH: most of ingest's CPU. The plain shape (v5, QoS 0/1, a topic name, no
        # properties) is parsed here; anything else, malformed included, goes to paho.
        deliver = self.on_plain_publish
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if deliver is None or qos > 1 or not self._manual_ack or self._protocol != mqtt.MQTTv5:
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        topic_end = 2 + ((packet[0] << 8) | packet[1]) if len(packet) >= 2 else 0
        properties_at = topic_end + (2 if qos else 0)
        if topic_end <= 2 or properties_at >= len(packet) or packet[properties_at] != 0:
            return super()._handle_publish()  # a topic alias, properties, or malformed
        try:
            topic = bytes(packet[2:topic_end]).decode("utf-8")
        except UnicodeDecodeError:
            return super()._handle_publish()
        mid = (packet[topic_end] << 8) | packet[topic_end + 1] if qos else 0
        with self._in_callback_mutex:
            try:
                deliver(topic, bytes(packet[properties_at + 1:]), mid, qos)
            except Exception as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        # No per-topic callbacks are ever added here, so skip paho's topic matcher, which
        # costs a split and a generator walk per message, and call on_message directly.
        callback = self.on_message
        if callback is None:
            return
        with self._in_callback_mutex:
            try:
                callback(self, self._userdata, message)
            except Exception as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        # Stock loop_read handles one packet per select() for a QoS 1 subscriber. Keep
        # going until the socket is dry; never stop with bytes left in the buffer, or
        # select() would sleep on data that already arrived.
        handled = 0
        while True:
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            handled += 1
            if not self._buffered() and (rc == MQTTErrorCode.MQTT_ERR_AGAIN
                                         or handled >= _READ_BURST):
                return MQTTErrorCode.MQTT_ERR_SUCCESS


class MqttSource:
    def __init__(self, *, host: str, port: int, client_id: str, topic_root: str,
                 share_group: str | None = None, username: str | None = None,
                 password: str | None = None, connect_timeout_s: float = 30.0) -> None:
        self._host = host
        self._port = port
        self._topic_root = topic_root.rstrip("/")
        self._share_group = share_group
        self._connect_timeout_s = connect_timeout_s
        self._client = _BurstReadingClient(CallbackAPIVersion.VERSION2, client_id=client_id,
                                           protocol=mqtt.MQTTv5, manual_ack=True)
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_plain_publish = self._on_publish
        self._client.on_subscribe = self._on_subscribe
        self._client.on_unsubscribe = self._on_unsubscribe
        self._answered_unsubscribes: set[int] = set()
        self._pending_subscriptions: set[int] = set()
        self._lock = threading.Lock()
        self._buffer: list[RawMessage] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = asyncio.Event()
        self._connected = threading.Event()
        self._refused: str | None = None

    def subscriptions(self) -> list[str]:
        # Everything under the root, so a misspelt topic becomes a counted reject, not silence.
        filters = [f"{self._topic_root}/#"]
        if self._share_group:
            return [f"$share/{self._share_group}/{f}" for f in filters]
        return filters

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = _SESSION_EXPIRY_S
        props.ReceiveMaximum = _RECEIVE_MAXIMUM
        try:
            self._client.connect_async(self._host, self._port, keepalive=30, clean_start=False,
                                       properties=props)
        except (OSError, ValueError) as err:
            raise MqttSourceError(f"cannot connect to MQTT {self._host}:{self._port}: {err}") \
                from err
        self._client.loop_start()
        connected = await asyncio.to_thread(self._connected.wait, self._connect_timeout_s)
        if not connected or self._refused:
            self._client.loop_stop()
            raise MqttSourceError(f"MQTT broker {self._host}:{self._port} "
                                  f"{self._refused or 'did not answer'}")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        # Unacknowledged messages stay in the broker's session and come again next time.
        # PUBACKs still queued would be lost with the connection: give them a moment to go.
        deadline = time.monotonic() + _FLUSH_ACKS_S
        while self._client.want_write() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await self._round_trip(deadline)
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)

    async def _round_trip(self, deadline: float) -> None:
        """Until the broker answers a request sent after every PUBACK (or ``deadline``).

        A PUBACK written to the socket can still be lost if the connection closes before
        the broker reads it (under load, acknowledged messages came back on the next
        connection). The broker handles a connection's packets in order, so its answer to
        an UNSUBSCRIBE of a filter never subscribed says every PUBACK before it arrived.
        """
        if not self._client.is_connected():
            return
        result, mid = self._client.unsubscribe(f"{self._topic_root}/.closing")
        if result != mqtt.MQTT_ERR_SUCCESS or mid is None:
            return
        while mid not in self._answered_unsubscribes and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if mid not in self._answered_unsubscribes:
            log.warning("mqtt host=%s did not confirm our acknowledgements before closing; "
                        "some messages may come again", self._host)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            self._refused = f"refused the connection: {reason}"
            log.error("mqtt connect refused host=%s reason=%s", self._host, reason)
            self._connected.set()
            return
        log.info("mqtt connected host=%s port=%d session_present=%s", self._host, self._port,
                 flags.session_present)
        # Ready only once the broker confirms the subscriptions: nothing published after
        # __aenter__ returns can miss us.
        for topic in self.subscriptions():
            result, mid = client.subscribe(topic, qos=1)
            if result == mqtt.MQTT_ERR_SUCCESS and mid is not None:
                self._pending_subscriptions.add(mid)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reason_codes: list[ReasonCode], properties: Properties | None) -> None:
        failed = [str(code) for code in reason_codes if code.is_failure]
        if failed:
            self._refused = f"refused the subscription: {', '.join(failed)}"
            log.error("mqtt subscribe refused host=%s reasons=%s", self._host, failed)
        self._pending_subscriptions.discard(mid)
        if not self._pending_subscriptions:
            self._connected.set()

    def _on_unsubscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                        reason_codes: list[ReasonCode], properties: Properties | None) -> None:
        self._answered_unsubscribes.add(mid)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason: ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            log.warning("mqtt disconnected host=%s reason=%s; reconnecting", self._host, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._on_publish(msg.topic, bytes(msg.payload), msg.mid, msg.qos)

    def _on_publish(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        item = RawMessage(topic=topic, payload=payload, received_at=time.time(), mid=mid, qos=qos)
        with self._lock:
            self._buffer.append(item)
            first = len(self._buffer) == 1
        if first and self._loop is not None:
            # Wake the drainer once per batch, not once per message.
            self._loop.call_soon_threadsafe(self._ready.set)

    async def take(self, max_messages: int, timeout_s: float) -> list[RawMessage]:
        """Wait up to ``timeout_s`` for messages, then return up to ``max_messages``."""
        if not self._buffer:
            try:
                await asyncio.wait_for(self._ready.wait(), timeout_s)
            except TimeoutError:
                return []
        with self._lock:
            taken, self._buffer = self._buffer[:max_messages], self._buffer[max_messages:]
            if not self._buffer:
                self._ready.clear()
        return taken

    def pending(self) -> int:
        return len(self._buffer)

    def ack(self, messages: Sequence[RawMessage]) -> None:
        for m in messages:
            if m.qos > 0:
                self._client.ack(m.mid, m.qos)

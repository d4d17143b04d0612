"""A lean MQTT 3.1.1 QoS 1 publisher on asyncio streams, for the load fleet.

paho spends tens of microseconds of Python per published message (a lock, a condition
object and a message-info object each, and a scan of its in-flight list on every PUBACK);
at fleet rates that, not the broker, is the limit. This publisher does only what a load
generator needs: CONNECT, PUBLISH at QoS 1 with a bounded window of unacknowledged packet
ids, PUBACK counting, PINGREQ when idle, DISCONNECT. It never subscribes, never retries
and never reconnects: a lost connection ends the run with ``PublisherError``, counted
by the fleet as an error. Packets follow MQTT 3.1.1 (OASIS, 2014) §3.1, §3.3, §3.4.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from types import TracebackType
from typing import Self

from simulators.publisher import PublisherError

__all__ = ["WirePublisher"]

log = logging.getLogger(__name__)

_PUBACK = 0x40
_PINGRESP = 0xD0
_CONNACK = 0x20
_DRAIN_EVERY = 256  # writes between waits for the socket buffer to drain


def _remaining_length(n: int) -> bytes:
    """MQTT's variable-length integer (§2.2.3).

    >>> [_remaining_length(n).hex() for n in (0, 127, 128, 16383, 16384)]
    ['00', '7f', '8001', 'ff7f', '808001']
    """
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


def connect_packet(client_id: str, *, keepalive_s: int, username: str | None = None,
                   password: str | None = None) -> bytes:
    """CONNECT with a clean session (§3.1).

    >>> connect_packet("c1", keepalive_s=60).hex()
    '100e00044d5154540402003c00026331'
    """
    flags = 0x02
    payload = _string(client_id.encode())
    if username is not None:
        flags |= 0x80
        payload += _string(username.encode())
        if password is not None:
            flags |= 0x40
            payload += _string(password.encode())
    body = _string(b"MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive_s) + payload
    return b"\x10" + _remaining_length(len(body)) + body


class WirePublisher:
    """Publish QoS 1 over one connection; count what the broker acknowledged.

    Parameters
    ----------
    host, port
        The broker.
    client_id
        Must be unique on the broker (a second connection with it evicts the first).
    window
        Packets awaiting PUBACK before ``publish`` waits.
    """

    def __init__(self, host: str, port: int, *, client_id: str, username: str | None = None,
                 password: str | None = None, window: int = 2000, keepalive_s: int = 60,
                 connect_timeout_s: float = 10.0) -> None:
        if not 1 <= window <= 65535:
            raise ValueError("window must be 1..65535 (16-bit packet ids)")
        self.host = host
        self.port = port
        self._client_id = client_id
        self._username = username
        self._password = password
        self._window = window
        self._keepalive_s = keepalive_s
        self._connect_timeout_s = connect_timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: dict[int, int] = {}  # packet id -> readings it carries
        self._next_id = 0
        self._room = asyncio.Event()
        self._idle = asyncio.Event()
        self._failed: BaseException | None = None
        self._since_drain = 0
        self.messages_sent = 0
        self.messages_acked = 0
        self.readings_acked = 0
        self.messages_rejected = 0  # MQTT 3.1.1 has no negative PUBACK; kept for the counters

    async def __aenter__(self) -> Self:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self._connect_timeout_s)
            self._reader, self._writer = reader, writer
            writer.write(connect_packet(self._client_id, keepalive_s=self._keepalive_s,
                                        username=self._username, password=self._password))
            connack = await asyncio.wait_for(reader.readexactly(4), self._connect_timeout_s)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as err:
            await self._close_socket()
            raise PublisherError(f"cannot connect to MQTT broker {self.host}:{self.port}: "
                                 f"{err!r}") from err
        if connack[0] != _CONNACK or connack[3] != 0:
            await self._close_socket()
            raise PublisherError(f"broker {self.host}:{self.port} refused the connection "
                                 f"(CONNACK {connack.hex()})")
        self._room.set()
        self._idle.set()
        self._tasks = [asyncio.create_task(self._read_acks(), name="wire.acks"),
                       asyncio.create_task(self._ping(), name="wire.ping")]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if exc is None and self._failed is None:
                await self.flush(10.0)
                if self._writer is not None:
                    self._writer.write(b"\xe0\x00")  # DISCONNECT
        finally:
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._close_socket()

    @property
    def pending(self) -> int:
        return len(self._inflight)

    async def publish(self, topic: str, payload: bytes, *, readings: int = 0) -> None:
        """Write one QoS 1 PUBLISH; waits while ``window`` packets are unacknowledged."""
        while len(self._inflight) >= self._window:
            self._room.clear()
            await self._room.wait()
            self._raise_if_failed()
        self._raise_if_failed()
        writer = self._writer
        if writer is None:
            raise PublisherError("publisher is not connected")
        packet_id = self._take_id()
        topic_bytes = topic.encode()
        length = 2 + len(topic_bytes) + 2 + len(payload)
        writer.write(b"".join((b"\x32", _remaining_length(length),
                               struct.pack("!H", len(topic_bytes)), topic_bytes,
                               struct.pack("!H", packet_id), payload)))
        self._inflight[packet_id] = readings
        self._idle.clear()
        self.messages_sent += 1
        self._since_drain += 1
        if self._since_drain >= _DRAIN_EVERY:
            self._since_drain = 0
            try:
                await writer.drain()
            except OSError as err:
                raise PublisherError(f"lost the MQTT broker {self.host}:{self.port}: "
                                     f"{err!r}") from err

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every PUBLISH is acknowledged; False on timeout or a lost broker."""
        if self._writer is not None:
            with contextlib.suppress(OSError):
                await self._writer.drain()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return self._failed is None

    def _take_id(self) -> int:
        while True:
            self._next_id = self._next_id % 65535 + 1  # 1..65535; 0 is not a packet id
            if self._next_id not in self._inflight:
                return self._next_id

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            raise PublisherError(f"lost the MQTT broker {self.host}:{self.port}: "
                                 f"{self._failed!r}")

    async def _read_acks(self) -> None:
        reader = self._reader
        if reader is None:
            return
        buffer = b""
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionResetError("broker closed the connection")
                buffer = self._parse(buffer + chunk)
        except (OSError, ValueError) as err:
            self._failed = err
            log.error("wire publisher lost %s:%d: %r", self.host, self.port, err)
            self._room.set()
            self._idle.set()

    def _parse(self, data: bytes) -> bytes:
        """Handle every whole packet in ``data``; return the incomplete tail."""
        view = memoryview(data)
        at, end = 0, len(data)
        inflight = self._inflight
        while end - at >= 2:
            kind = view[at]
            if kind == _PUBACK and view[at + 1] == 2:
                if end - at < 4:
                    break
                readings = inflight.pop((view[at + 2] << 8) | view[at + 3], None)
                if readings is not None:
                    self.messages_acked += 1
                    self.readings_acked += readings
                at += 4
                continue
            if kind == _PINGRESP and view[at + 1] == 0:
                at += 2
                continue
            raise ValueError(f"unexpected MQTT packet type 0x{kind:02x}")
        if len(inflight) < self._window:
            self._room.set()
        if not inflight:
            self._idle.set()
        return bytes(view[at:])

    async def _ping(self) -> None:
        # Any packet counts as activity, but a broker may also want PINGREQs when idle.
        while True:
            await asyncio.sleep(self._keepalive_s / 2)
            if self._writer is not None:
                self._writer.write(b"\xc0\x00")

    async def _close_socket(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

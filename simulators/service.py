"""The simulator service: the configured community publishing over MQTT until ``stop``.

Every device reports every ``report_interval_s / speed`` wall seconds from a seeded start
offset; configured scenarios start ``start_after_s`` simulated seconds in. Messages are
produced and handed to paho in batches from the event loop; acknowledgements are counted
on paho's thread, so the loop never blocks on the broker except when too many messages are
unacknowledged (bounded memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from config.settings import Settings
from simulators.community import Community
from simulators.models import GroundTruth
from simulators.publisher import MqttPublisher

__all__ = ["SimulatorService"]

log = logging.getLogger(__name__)


class SimulatorService:
    """Publish the community of ``settings`` to the broker at ``mqtt_host:mqtt_port``.

    Parameters
    ----------
    settings
        Devices, sites, ``simulator`` (seed, speed, scenarios) and MQTT credentials/topic root.
    mqtt_host, mqtt_port
        The broker (passed apart from settings: the embedded broker's port is chosen at run time).
    clock
        Monotonic seconds; drives the schedule.
    wall_clock
        Epoch seconds; read once at start to anchor payload timestamps.
    drill
        Mark every payload ``"drill": true``.
    batch_size
        Messages published between yields to the event loop.
    """

    def __init__(self, settings: Settings, mqtt_host: str, mqtt_port: int, *,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 drill: bool = False, batch_size: int = 500,
                 max_inflight: int = 100, stop_timeout_s: float = 10.0,
                 announce_offline: bool = True) -> None:
        self._settings = settings
        self._announce_offline = announce_offline
        self._host = mqtt_host
        self._port = mqtt_port
        self._clock = clock
        self._wall_clock = wall_clock
        self._drill = drill
        self._batch_size = batch_size
        self._max_inflight = max_inflight
        self._stop_timeout_s = stop_timeout_s
        self._publisher: MqttPublisher | None = None
        self.community: Community | None = None
        self.started = asyncio.Event()  # set once "online" statuses are acknowledged

    @property
    def messages_published(self) -> int:
        """Messages the broker acknowledged: telemetry, events and statuses."""
        return self._publisher.messages_acked if self._publisher is not None else 0

    @property
    def readings_published(self) -> int:
        """Readings in acknowledged messages: one per telemetry value, one per event."""
        return self._publisher.readings_acked if self._publisher is not None else 0

    @property
    def published_by_device(self) -> dict[str, int]:
        """Acknowledged telemetry and event messages per device id (statuses excluded)."""
        return self._publisher.acked_by_key() if self._publisher is not None else {}

    @property
    def readings_by_device(self) -> dict[str, int]:
        return self._publisher.readings_by_key() if self._publisher is not None else {}

    def ground_truth(self) -> list[GroundTruth]:
        return self.community.ground_truth() if self.community is not None else []

    async def run(self, stop: asyncio.Event) -> None:
        settings = self._settings
        community = Community.from_settings(settings, epoch0=self._wall_clock(),
                                            drill=self._drill)
        self.community = community
        password = settings.mqtt.password.get_secret_value() if settings.mqtt.password else None
        publisher = MqttPublisher(self._host, self._port, username=settings.mqtt.username,
                                  password=password, max_inflight=self._max_inflight,
                                  close_timeout_s=self._stop_timeout_s)
        self._publisher = publisher
        log.info("simulating %d devices at speed %g (seed %d) to %s:%d", len(community),
                 community.speed, settings.simulator.seed, self._host, self._port)
        async with publisher:
            try:
                for message in community.statuses(online=True):
                    await publisher.publish(message.topic, message.payload, retain=True)
                await publisher.flush(self._stop_timeout_s)
                self.started.set()
                await self._publish_until(stop, community, publisher)
            finally:
                # Clean stop: the shared connection has no per-device will (see publisher).
                if self._announce_offline:
                    for message in community.statuses(online=False):
                        await publisher.publish(message.topic, message.payload, retain=True)
                if not await publisher.flush(self._stop_timeout_s):
                    log.warning("stopping with %d messages unacknowledged", publisher.pending)
        log.info("simulator stopped: %d messages, %d readings acknowledged",
                 publisher.messages_acked, publisher.readings_acked)

    async def _publish_until(self, stop: asyncio.Event, community: Community,
                             publisher: MqttPublisher) -> None:
        started_at = self._clock()
        speed = community.speed
        while not stop.is_set():
            now_s = (self._clock() - started_at) * speed
            batch = community.due(now_s, limit=self._batch_size)
            for message in batch:
                await publisher.publish(message.topic, message.payload, key=message.device_id,
                                        readings=message.readings)
            if len(batch) == self._batch_size:
                await asyncio.sleep(0)  # more is due: let other tasks run, then continue
                continue
            wait_s = (community.next_due_s - now_s) / speed
            if wait_s > 0:
                await _sleep_unless(stop, min(wait_s, 1.0))


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set, whichever is first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)

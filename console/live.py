"""Live alert updates: one bus consumer per console process, fanned out to every viewer.

Each viewer (an open ``/api/stream``) has its own bounded queue. The fan-out never waits
for a viewer: when a queue is full the oldest update is dropped and counted, and the
viewer is told to reload (``lost``), so one stalled browser cannot hold back the rest.

What the board shows beside an alert (assignee, escalation step and due time) is read
from the database once per bus batch by ``annotate``, not once per viewer.

Each viewer also remembers whose session it serves (the hash of the session cookie), so a
logout ends that session's open streams in this process at once (``end_session``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager, suppress

import psycopg

from console.metrics import FEED_MESSAGES, LIVE_DROPPED, LIVE_VIEWERS
from console.models import BoardNotes
from shouwang.bus import Bus, BusError, Message
from shouwang.codec import CodecError, decode_alert
from shouwang.models import Alert

__all__ = ["ALERT_UPDATES", "AlertFeed", "TooManyViewers", "Viewer"]

log = logging.getLogger(__name__)

ALERT_UPDATES = "alert-updates"
_POLL_S = 0.25  # longest wait for the bus; bounds how long ``stop`` takes to be noticed
_NOTES_KEPT = 4096  # alert updates whose notes are kept for viewers still to send them
_ANNOTATE_TIMEOUT_S = 2.0  # an update goes out without notes rather than late

Annotate = Callable[[list[Alert]], Awaitable[Mapping[int, BoardNotes]]]


class TooManyViewers(RuntimeError):
    """The console already serves its maximum number of live viewers."""


class Viewer:
    """One live viewer's bounded queue of alert updates."""

    def __init__(self, maxsize: int, session_key: bytes | None = None) -> None:
        # None is the end-of-stream marker (the console is shutting down, or the session ended).
        self._queue: asyncio.Queue[Alert | None] = asyncio.Queue(maxsize=maxsize)
        self._lost = 0
        self.session_key = session_key
        self.session_ended = False

    def end_session(self) -> None:
        """End the stream now: its session is gone, so nothing still queued may go out."""
        self.session_ended = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    def offer(self, item: Alert | None) -> None:
        """Enqueue without waiting; a full queue loses its oldest update."""
        if self.session_ended:
            return  # its end marker is queued and must stay there
        if self._queue.full():
            dropped = self._queue.get_nowait()
            if dropped is not None:
                self._lost += 1
                LIVE_DROPPED.inc()
        self._queue.put_nowait(item)

    async def get(self) -> Alert | None:
        """The next update, or None once the feed has closed."""
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # stays closed for any later get()
        return item

    def take_lost(self) -> int:
        """How many updates were dropped since the last call (the viewer must reload)."""
        lost, self._lost = self._lost, 0
        return lost


class AlertFeed:
    """Reads ``alert-updates`` from the latest offset and hands each alert to every viewer.

    Parameters
    ----------
    bus
        An entered bus.
    viewer_queue
        Updates buffered per viewer before the oldest is dropped.
    max_viewers
        More concurrent viewers than this are refused (``TooManyViewers``).
    retry_max_s
        Longest wait between attempts to rejoin the bus after an error.
    annotate
        Reads the board's notes of a batch of alerts (by alert id); None: no notes.
    """

    def __init__(self, bus: Bus, *, viewer_queue: int = 256, max_viewers: int = 200,
                 retry_max_s: float = 30.0, annotate: Annotate | None = None) -> None:
        self._bus = bus
        self._annotate = annotate
        self._notes: OrderedDict[Alert, BoardNotes] = OrderedDict()
        self._annotate_failing = False
        self._viewer_queue = viewer_queue
        self.max_viewers = max_viewers
        self._retry_max_s = retry_max_s
        self._viewers: set[Viewer] = set()
        self._closed = False
        # Set once the consumer has joined: updates published after this reach viewers.
        self.ready = asyncio.Event()

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    @contextmanager
    def subscribe(self, session_key: bytes | None = None) -> Iterator[Viewer]:
        """A new viewer; ``session_key`` (the session's token hash) lets ``end_session``
        find it."""
        if len(self._viewers) >= self.max_viewers:
            raise TooManyViewers(f"{self.max_viewers} live viewers already connected")
        viewer = Viewer(self._viewer_queue, session_key)
        if self._closed:
            viewer.offer(None)
        self._viewers.add(viewer)
        LIVE_VIEWERS.inc()
        try:
            yield viewer
        finally:
            self._viewers.discard(viewer)
            LIVE_VIEWERS.dec()

    def close(self) -> None:
        """End every viewer's stream (the server waits for open responses to finish)."""
        self._closed = True
        for viewer in list(self._viewers):
            viewer.offer(None)

    def end_session(self, session_key: bytes) -> int:
        """End the open streams of one session (it logged out); returns how many."""
        ended = [v for v in self._viewers if v.session_key == session_key]
        for viewer in ended:
            viewer.end_session()
        return len(ended)

    def deliver(self, alert: Alert, notes: BoardNotes | None = None) -> None:
        """Hand ``alert`` (and what the board shows beside it) to every viewer now."""
        if notes is not None:
            self._notes[alert] = notes
            self._notes.move_to_end(alert)
            while len(self._notes) > _NOTES_KEPT:
                self._notes.popitem(last=False)
        for viewer in list(self._viewers):
            viewer.offer(alert)

    def notes(self, alert: Alert) -> BoardNotes | None:
        """The notes read for this very update, if they could be read."""
        return self._notes.get(alert)

    async def _notes_of(self, alerts: list[Alert]) -> Mapping[int, BoardNotes]:
        if self._annotate is None or not alerts:
            return {}
        try:
            found = await asyncio.wait_for(self._annotate(alerts), _ANNOTATE_TIMEOUT_S)
        except (psycopg.Error, TimeoutError) as err:
            if not self._annotate_failing:  # once per outage
                log.warning("live alerts go out without assignee and escalation: %s", err)
            self._annotate_failing = True
            return {}
        self._annotate_failing = False
        return found

    async def _dispatch(self, messages: list[Message]) -> None:
        alerts = []
        for message in messages:
            try:
                alerts.append(decode_alert(message.value))
            except CodecError as err:
                FEED_MESSAGES.labels("undecodable").inc()
                log.warning("skipping alert-updates message key=%s: %s", message.key, err)
        notes = await self._notes_of(alerts)
        for alert in alerts:
            FEED_MESSAGES.labels("delivered").inc()
            self.deliver(alert, notes.get(alert.id))

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop``; rejoin with jittered exponential backoff after bus errors."""
        # A fresh group per process: every console sees every update, none holds back others.
        group = f"console-{uuid.uuid4().hex[:12]}"
        first_delay = min(0.5, self._retry_max_s)
        delay = first_delay
        failing = False
        while not stop.is_set():
            try:
                async with self._bus.consumer([ALERT_UPDATES], group, from_latest=True) as feed:
                    self.ready.set()
                    if failing:
                        log.info("live alert feed rejoined the bus (group=%s)", group)
                    failing, delay = False, first_delay
                    while not stop.is_set():
                        await self._dispatch(await feed.batch(max_records=500,
                                                              timeout_s=_POLL_S))
            except BusError as err:
                if not failing:  # log once per outage, not on every retry
                    log.error("live alert feed lost the bus, retrying: %s", err)
                failing = True
                pause = random.uniform(0.5, 1.0) * delay
                delay = min(delay * 2, self._retry_max_s)
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)

"""The outbox: notifications written with their alert, sent later by the dispatcher.

A row is queued in the same transaction that opened the alert, and the unique key
``(alert_id, step, receiver)`` makes queueing idempotent: a redelivered detection
queues nothing new. The dispatcher leases due rows with ``FOR UPDATE SKIP LOCKED``
(two alerting processes never take the same row), sends them concurrently, each
with its own timeout, and records the outcome on the row.

At least once, not exactly once: a crash after the far end accepted a message but
before the row is marked sent leaves the row leased; when the lease runs out it is
sent again. That one duplicate is the price of never losing a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from psycopg import AsyncConnection, AsyncCursor
from psycopg_pool import AsyncConnectionPool

from alerting import metrics
from alerting.broadcast import spoken_part, with_audio
from alerting.models import Language, OutboxItem
from alerting.notifiers.base import Notifier, NotifyError
from alerting.speech import SpeechSynthesizer
from alerting.templates import form_of, render_title
from config.settings import AlertingSettings, Receiver
from shouwang.models import Alert, Severity
from shouwang.retry import retry_until_done

__all__ = ["Dispatcher", "Pool", "claim_due", "enqueue", "retry_delay"]

log = logging.getLogger(__name__)

Pool = AsyncConnectionPool[AsyncConnection[Any]]  # Any: tuple rows

_ENQUEUE = """
INSERT INTO notifications (alert_id, step, receiver, channel, body, status, covers,
                           created_at, next_attempt_at)
SELECT %s, %s, receiver, channel, body, %s, %s, to_timestamp(%s), to_timestamp(%s)
FROM unnest(%s::text[], %s::text[], %s::text[]) AS queued(receiver, channel, body)
ON CONFLICT (alert_id, step, receiver) DO NOTHING
"""
# The lease moves next_attempt_at past the send's deadline, so the row is not due again
# while it is being sent; if this process dies, it falls due when the lease ends.
# In the same statement (the row is locked: no other claim sees it), a later escalation
# step or a reminder whose alert was answered meanwhile is withdrawn, not sent: it would
# tell someone "nobody has acknowledged" after somebody had. Step 0 always goes: the
# first message of a route or policy (the fire station) must hear of a fire even if a
# duty officer acknowledged first. A storm summary (covers) tells of other alerts too.
# A message of an alert silenced or inhibited meanwhile (suppressed) waits, as the held
# ones of the storm gate do: it goes when the suppression ends and the alert reopens, or
# is withdrawn by the rule above if the alert is answered first.
_CLAIM = """
WITH due AS (
    SELECT n.id FROM notifications n JOIN alerts a ON a.id = n.alert_id
    WHERE n.status = 'pending' AND n.next_attempt_at <= to_timestamp(%(now)s)
      AND NOT (n.channel = ANY(%(busy)s))
      AND (a.status <> 'suppressed' OR n.covers IS NOT NULL)
    ORDER BY n.next_attempt_at, n.id
    LIMIT %(limit)s
    FOR UPDATE OF n SKIP LOCKED
), answered AS (
    SELECT n.id, n.step >= 1 AND n.covers IS NULL
                 AND a.status IN ('acknowledged', 'resolved', 'expired') AS answered
    FROM due JOIN notifications n ON n.id = due.id JOIN alerts a ON a.id = n.alert_id
)
UPDATE notifications n SET
    next_attempt_at = CASE WHEN answered.answered THEN n.next_attempt_at
                           ELSE to_timestamp(%(lease_until)s) END,
    status = CASE WHEN answered.answered THEN 'withdrawn' ELSE n.status END,
    last_error = CASE WHEN answered.answered
                      THEN 'not sent: the alert was ' || a.status || ' before this page went out'
                      ELSE n.last_error END
FROM answered, alerts a LEFT JOIN sites s ON s.id = a.site
WHERE n.id = answered.id AND a.id = n.alert_id
RETURNING n.id, n.alert_id, n.receiver, n.channel, n.body, n.attempts, a.hazard, a.severity,
          a.drill, coalesce(s.name, a.site), n.status
"""
_SENT = """
UPDATE notifications SET status = 'sent', attempts = attempts + 1,
    sent_at = to_timestamp(%s), last_error = '' WHERE id = %s
"""
_RETRY = """
UPDATE notifications SET attempts = attempts + 1, last_error = %s,
    next_attempt_at = to_timestamp(%s) WHERE id = %s
"""
_FAILED = """
UPDATE notifications SET status = 'failed', attempts = attempts + 1, last_error = %s
WHERE id = %s
"""
# A message given up on is on the alert's audit trail too: no delivery fails silently.
_FAILED_EVENT = """
INSERT INTO alert_events (alert_id, at, actor, source, action, from_status, to_status, note)
SELECT id, to_timestamp(%s), 'system', 'outbox', 'delivery_failed', status, status, %s
FROM alerts WHERE id = %s
"""
_LATER = "UPDATE notifications SET next_attempt_at = to_timestamp(%s) WHERE id = %s"
_BACKSTOP_S = 1.0  # extra time before the dispatcher gives up on a notifier itself


def retry_delay(attempts: int, *, base_s: float, max_s: float, rng: random.Random) -> float:
    """Seconds to wait after a failure, when ``attempts`` tries had failed before it.

    ``base_s * 2**attempts`` capped at ``max_s``, then jittered down by up to half so
    that many messages failing together do not all come back at once.

    >>> rng = random.Random(1)
    >>> [round(retry_delay(n, base_s=1.0, max_s=60.0, rng=rng), 2) for n in range(8)]
    [0.57, 1.85, 3.53, 5.02, 11.96, 23.19, 49.55, 53.66]
    """
    ceiling = min(max_s, base_s * 2.0 ** min(attempts, 62))
    return ceiling * rng.uniform(0.5, 1.0)


async def enqueue(cur: AsyncCursor[Any], alert: Alert, step: int,
                  receivers: Sequence[Receiver], bodies: Mapping[str, str],
                  now: float, *, status: str = "pending", due: float | None = None,
                  covers: Sequence[int] | None = None) -> int:
    """Queue one row per receiver (``bodies`` by channel); returns how many were new.

    Call inside the alert's transaction. Rows already queued for this alert and step
    are left alone, so a repeat never sends twice. ``status`` ``held`` waits for an
    alarm storm's window to end (``due``); ``summarised`` records an alert a summary
    told of; ``covers`` lists the alerts of a summary row.
    """
    if not receivers:
        return 0
    await cur.execute(_ENQUEUE, (
        alert.id, step, status, None if covers is None else list(covers), now,
        now if due is None else due,
        [r.name for r in receivers], [r.channel for r in receivers],
        [bodies[r.channel] for r in receivers]))
    return cur.rowcount


async def claim_due(conn: AsyncConnection[Any], now: float, limit: int,
                    lease_s: float, *, busy: Sequence[str] = ()) -> list[OutboxItem]:
    """Lease up to ``limit`` rows due at ``now`` for ``lease_s`` seconds (autocommit).

    Rows of the ``busy`` channels are left for later. Escalation steps after the first
    and reminders of an alert answered meanwhile become ``withdrawn`` instead.
    """
    cur = await conn.execute(_CLAIM, {"now": now, "limit": limit, "busy": list(busy),
                                      "lease_until": now + lease_s})
    claimed = await cur.fetchall()
    for r in claimed:
        if r[10] == "withdrawn":
            log.info("notification=%d alert=%d receiver=%s withdrawn: its alert was answered "
                     "before it went out", r[0], r[1], r[2])
    return [OutboxItem(id=r[0], alert_id=r[1], receiver=r[2], channel=r[3], body=r[4],
                       attempts=r[5], hazard=r[6], severity=Severity(r[7]), drill=r[8],
                       site_name=r[9])
            for r in claimed if r[10] != "withdrawn"]


class _RateLimit:
    """A token bucket on the injected clock: ``per_minute`` sends, bursts up to that."""

    def __init__(self, per_minute: int) -> None:
        self._rate = per_minute / 60.0
        self._capacity = float(per_minute)
        self._tokens = float(per_minute)
        self._at: float | None = None

    def take(self, now: float) -> float:
        """0.0 when a send may go now, else seconds until it may."""
        if self._at is not None:
            self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate


class Dispatcher:
    """Sends due outbox rows through a ``Notifier``: concurrent, bounded, retried.

    It polls every ``poll_s`` and also as soon as ``wake`` is set (after an enqueue).
    """

    def __init__(self, notifier: Notifier, settings: AlertingSettings, *,
                 wake: asyncio.Event, clock: Callable[[], float] = time.time,
                 language: Language = "zh", poll_s: float = 0.2, max_in_flight: int = 32,
                 rng: random.Random | None = None,
                 speech: SpeechSynthesizer | None = None) -> None:
        self._notifier = notifier
        self._speech = speech  # renders the loudspeakers' audio clip; None = text only
        self._settings = settings
        self._receivers = {r.name: r for r in settings.receivers}
        self._wake = wake
        self._clock = clock
        self._language = language
        self._poll_s = poll_s
        self._max_in_flight = max_in_flight
        self._rng = rng or random.Random()
        self._limits = {c.channel: c for c in settings.channels}
        self._rates = {c.channel: _RateLimit(c.per_minute) for c in settings.channels}
        longest = max([settings.send_timeout_s, *(c.timeout_s for c in settings.channels)])
        self._lease_s = 2 * longest + 10.0
        self._in_flight: set[int] = set()
        self._per_channel: dict[str, int] = {}
        self._failing: set[str] = set()  # receivers whose last send failed

    async def run(self, pool: Pool, stop: asyncio.Event) -> None:
        """Until ``stop``; sends already started finish (each within its timeout)."""
        async with asyncio.TaskGroup() as sends:
            more = False
            while not stop.is_set():
                if not more:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._poll_s)
                    self._wake.clear()
                free = self._max_in_flight - len(self._in_flight)
                if free <= 0:
                    more = False
                    continue
                now = self._clock()
                items = await retry_until_done(partial(self._claim, pool, now, free), stop,
                                               what="outbox claim")
                more = len(items) == free  # a full batch: more may be due already
                for item in items:
                    self._in_flight.add(item.id)
                    self._per_channel[item.channel] = self._per_channel.get(item.channel, 0) + 1
                    sends.create_task(self._deliver(pool, item, stop),
                                      name=f"alerting.send:{item.id}")

    async def _claim(self, pool: Pool, now: float, limit: int) -> list[OutboxItem]:
        busy = [channel for channel, limits in self._limits.items()
                if self._per_channel.get(channel, 0) >= limits.max_in_flight]
        async with pool.connection() as conn:
            items = await claim_due(conn, now, limit, self._lease_s, busy=busy)
            ready = []
            for item in items:
                rate = self._rates.get(item.channel)
                wait_s = rate.take(now) if rate is not None else 0.0
                if wait_s > 0:  # over the channel's rate: due again when it has room
                    await conn.execute(_LATER, (now + wait_s, item.id))
                    continue
                ready.append(item)
            return ready

    async def _deliver(self, pool: Pool, item: OutboxItem, stop: asyncio.Event) -> None:
        try:
            started = time.perf_counter()
            error = await self._send(pool, item)
            metrics.SEND_SECONDS.labels(item.channel).observe(time.perf_counter() - started)
            finished = self._clock()  # once: the row's outcome is decided at this instant
            await retry_until_done(partial(self._record, pool, item, error, finished), stop,
                                   what="outbox update")
        finally:
            was_full = len(self._in_flight) >= self._max_in_flight
            self._in_flight.discard(item.id)
            self._per_channel[item.channel] -= 1
            if was_full:
                self._wake.set()  # a slot is free again: look for more work at once

    async def _send(self, pool: Pool, item: OutboxItem) -> NotifyError | None:
        receiver = self._receivers.get(item.receiver)
        if receiver is None:
            return NotifyError(f"receiver {item.receiver!r} is no longer configured",
                               retryable=False)
        title = render_title(hazard=item.hazard, severity=item.severity,
                             site_name=item.site_name, drill=item.drill,
                             language=self._language)
        body = item.body
        if form_of(item.channel) == "broadcast":
            # The structured message is the whole payload (an MQTT controller gets the
            # object alone: apprise would put a title in front of it).
            title = ""
            body = await self._with_audio(pool, body)
        limits = self._limits.get(item.channel)
        timeout_s = limits.timeout_s if limits is not None else self._settings.send_timeout_s
        try:
            # The notifier keeps to timeout_s; this backstop covers one that does not.
            async with asyncio.timeout(timeout_s + _BACKSTOP_S):
                await self._notifier.send(receiver, title, body, timeout_s=timeout_s)
        except NotifyError as err:
            return err
        except TimeoutError:
            return NotifyError(f"no answer within {timeout_s:g}s", retryable=True)
        except Exception as err:  # a notifier bug must not stop every other send
            log.exception("notifier crashed receiver=%s notification=%d", item.receiver,
                          item.id)
            return NotifyError(f"notifier crashed: {err!r}", retryable=True)
        return None

    async def _with_audio(self, pool: Pool, body: str) -> str:
        """``body`` with its audio clip described, when a TTS engine is there and works;
        the text alone otherwise (a loudspeaker must not wait on a missing voice)."""
        spoken = spoken_part(body)
        if self._speech is None or spoken is None:
            return body
        clip = await self._speech.render(pool, *spoken, now=self._clock())
        return body if clip is None else with_audio(body, clip.describe())

    async def _record(self, pool: Pool, item: OutboxItem, error: NotifyError | None,
                      now: float) -> None:
        attempts = item.attempts + 1
        async with pool.connection() as conn:
            if error is None:
                await conn.execute(_SENT, (now, item.id))
                result = "sent"
            elif error.retryable and attempts < self._settings.max_attempts:
                delay = retry_delay(item.attempts, base_s=self._settings.retry_base_s,
                                    max_s=self._settings.retry_max_s, rng=self._rng)
                await conn.execute(_RETRY, (str(error), now + delay, item.id))
                result = "retry"
            else:
                async with conn.transaction():
                    await conn.execute(_FAILED, (str(error), item.id))
                    await conn.execute(_FAILED_EVENT, (
                        now, f"{item.receiver} ({item.channel}) after {attempts} attempt(s): "
                             f"{error}", item.alert_id))
                result = "failed"
        metrics.NOTIFICATIONS.labels(item.channel, result).inc()
        self._log_outcome(item, error, attempts, result)

    def _log_outcome(self, item: OutboxItem, error: NotifyError | None, attempts: int,
                     result: str) -> None:
        if error is None:
            if item.receiver in self._failing:
                self._failing.discard(item.receiver)
                log.info("receiver=%s delivering again after failures", item.receiver)
            log.debug("sent notification=%d alert=%d receiver=%s attempts=%d", item.id,
                      item.alert_id, item.receiver, attempts)
            return
        if result == "failed":  # a message is lost: always worth an error
            log.error("gave up notification=%d alert=%d receiver=%s after %d attempt(s): %s",
                      item.id, item.alert_id, item.receiver, attempts, error)
        elif item.receiver not in self._failing:
            log.error("sending to receiver=%s failed, retrying with backoff: %s",
                      item.receiver, error)
        else:
            log.debug("receiver=%s still failing notification=%d attempts=%d", item.receiver,
                      item.id, attempts)
        self._failing.add(item.receiver)

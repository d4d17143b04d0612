"""Alarm-storm protection per receiver, across batches, for every message queued.

Both paths that queue messages (escalation policies and plain routes) hand them to the
``StormGate``. For each receiver:

- quiet (fewer than ``storm_threshold`` alerts reached it within ``storm_window_s``,
  counting these): each message goes at once, so the first of a quiet period is never
  delayed;
- one batch alone over the threshold after a quiet period: one summary at once;
- past the threshold within the window: the messages are held (status ``held``, in the
  database, so a restart keeps them) until the window that started then ends, when the
  escalator's ``release_held`` sends one summary (a lone held message goes as written).

Every alert a summary tells of keeps its own row (``summarised``; the summary row lists
them in ``covers``), so a replay queues nothing twice and the next count is honest.
An alert acknowledged, resolved or expired while its message was held needs nobody any
more: at release its row becomes ``withdrawn`` (``last_error`` says why) and is neither
sent nor counted; the summary tells of the alerts still open, and when none is left
nothing goes out. An alert silenced or inhibited meanwhile (``suppressed``) is left
out too, but its row stays ``held``, as a suppressed alert's messages wait: when the
suppression ends and the alert opens again, it goes then, once (the reopened alert's
queueing finds the row already there). It all happens in one transaction with the
rows locked, so a crash sends nothing twice and loses nothing still to be said.
``storm_window_s = 0`` keeps only the per-batch summary.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, AsyncCursor

from alerting.messages import MessageComposer
from alerting.models import NotifyContext
from alerting.outbox import enqueue
from config.settings import Receiver
from shouwang.models import Alert, AlertStatus
from shouwang.store.alerts import get_alert

__all__ = ["Outgoing", "StormGate", "release_held"]

log = logging.getLogger(__name__)

# What a receiver was told within the window (summarised alerts count, withdrawn ones
# were never told), and when the storm it is in, if any, will be summarised.
_RECENT = """
SELECT (SELECT count(*) FROM notifications WHERE receiver = %(receiver)s
          AND created_at > to_timestamp(%(since)s)
          AND status NOT IN ('held', 'withdrawn')),
       (SELECT extract(epoch FROM min(n.next_attempt_at)) FROM notifications n
          JOIN alerts a ON a.id = n.alert_id
          WHERE n.receiver = %(receiver)s AND n.status = 'held'
            AND a.status <> 'suppressed')
"""
# Held messages of suppressed alerts wait for the suppression to end, whenever that is:
# they neither fall due nor keep their receiver in a storm meanwhile.
_HELD_DUE = """
SELECT DISTINCT n.receiver FROM notifications n JOIN alerts a ON a.id = n.alert_id
WHERE n.status = 'held' AND n.next_attempt_at <= to_timestamp(%s)
  AND a.status <> 'suppressed' LIMIT %s
"""
# Only what is due: a message whose suppression ended late must not cut short the
# window of a later storm to the same receiver.
_HELD = """
SELECT n.id, n.alert_id, a.status FROM notifications n JOIN alerts a ON a.id = n.alert_id
WHERE n.receiver = %s AND n.status = 'held' AND n.next_attempt_at <= to_timestamp(%s)
  AND a.status <> 'suppressed'
ORDER BY n.id FOR UPDATE OF n SKIP LOCKED
"""
_WITHDRAW = "UPDATE notifications SET status = 'withdrawn', last_error = %s WHERE id = ANY(%s)"
# Someone answered these alerts while their messages were held: nobody needs telling.
_ANSWERED = frozenset({AlertStatus.ACKNOWLEDGED, AlertStatus.RESOLVED, AlertStatus.EXPIRED})


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """One message to queue: an alert's step for one receiver."""

    alert: Alert
    receiver: Receiver
    step: int             # notifications.step
    reminder: bool = False
    link: bool = True     # an acknowledgement link for people's channels


class StormGate:
    def __init__(self, composer: MessageComposer, *, threshold: int,
                 window_s: float = 0.0) -> None:
        self.composer = composer
        self._threshold = threshold
        self._window_s = window_s

    async def __call__(self, ctx: NotifyContext, messages: Sequence[Outgoing]) -> int:
        """Queue ``messages`` in the alerts' transaction; returns the rows to send now."""
        per_receiver: dict[str, list[Outgoing]] = defaultdict(list)
        for message in messages:
            per_receiver[message.receiver.name].append(message)
        queued = 0
        for name, items in per_receiver.items():
            told, held_until = await self._recent(ctx, name)
            if held_until is not None or (told > 0 and told + len(items) > self._threshold):
                release = held_until if held_until is not None else ctx.now + self._window_s
                for item in items:
                    await self._enqueue_one(ctx, item, status="held", due=release)
                log.warning("alarm storm: %d message(s) to receiver=%s held until the window "
                            "ends in %.0fs", len(items), name, release - ctx.now)
            elif len(items) > self._threshold:
                queued += await self._summarise_now(ctx, items)
                log.warning("alarm storm: %d alerts summarised in one message to receiver=%s",
                            len(items), name)
            else:
                for item in items:
                    queued += await self._enqueue_one(ctx, item)
        return queued

    async def _recent(self, ctx: NotifyContext, receiver: str) -> tuple[int, float | None]:
        if self._window_s <= 0:
            return 0, None
        await ctx.cur.execute(_RECENT, {"receiver": receiver,
                                        "since": ctx.now - self._window_s})
        row = await ctx.cur.fetchone()
        if row is None:
            return 0, None
        return int(row[0]), None if row[1] is None else float(row[1])

    async def _enqueue_one(self, ctx: NotifyContext, item: Outgoing, *,
                           status: str = "pending", due: float | None = None) -> int:
        body = self.composer.body(item.alert, item.receiver, ctx.now, reminder=item.reminder,
                                  link=item.link)
        return await enqueue(ctx.cur, item.alert, item.step, [item.receiver],
                             {item.receiver.channel: body}, ctx.now, status=status, due=due)

    async def _summarise_now(self, ctx: NotifyContext, items: Sequence[Outgoing]) -> int:
        first, rest = items[0], items[1:]
        alerts = [item.alert for item in items]
        queued = await enqueue(
            ctx.cur, first.alert, first.step, [first.receiver],
            {first.receiver.channel: self.composer.summary(alerts, first.receiver)},
            ctx.now, covers=[a.id for a in alerts])
        for item in rest:
            await self._enqueue_one(ctx, item, status="summarised")
        return queued


async def release_held(cur: AsyncCursor[Any], conn: AsyncConnection[Any],
                       receivers: Mapping[str, Receiver], composer: MessageComposer, *,
                       now: float, limit: int) -> int:
    """Send what storms held whose window has ended: one summary per receiver of the
    alerts still open (a lone one goes as it was written); the messages of alerts
    answered meanwhile are withdrawn, those of alerts suppressed meanwhile stay held
    until the suppression ends. Returns the rows now due. In a transaction."""
    await cur.execute(_HELD_DUE, (now, limit))
    released = 0
    for (name,) in await cur.fetchall():
        await cur.execute(_HELD, (name, now))
        rows = await cur.fetchall()
        answered: dict[str, list[int]] = defaultdict(list)
        for row_id, _, status in rows:
            if AlertStatus(status) in _ANSWERED:
                answered[status].append(row_id)
        for status, withdrawn in answered.items():
            await cur.execute(_WITHDRAW, (f"not sent: the alert was {status} while an alarm "
                                          "storm held this message", withdrawn))
            log.info("alarm storm: %d held message(s) to receiver=%s withdrawn, their "
                     "alerts %s meanwhile", len(withdrawn), name, status)
        rows = [r for r in rows if AlertStatus(r[2]) not in _ANSWERED]
        if not rows:
            continue
        ids = [r[0] for r in rows]
        receiver = receivers.get(name)
        if receiver is None or len(rows) == 1:  # no longer configured: the dispatcher fails it
            await cur.execute("UPDATE notifications SET status = 'pending', "
                              "next_attempt_at = to_timestamp(%s) WHERE id = ANY(%s)",
                              (now, ids))
            released += len(rows)
            continue
        # One alert held at two steps (a reminder after its first message) counts once.
        alerts = [await get_alert(conn, alert_id)
                  for alert_id in dict.fromkeys(r[1] for r in rows)]
        # Queued now, as far as fallbacks and the next storm count are concerned.
        await cur.execute(
            "UPDATE notifications SET status = 'pending', body = %s, covers = %s, "
            "created_at = to_timestamp(%s), next_attempt_at = to_timestamp(%s) WHERE id = %s",
            (composer.summary(alerts, receiver), [a.id for a in alerts], now, now, ids[0]))
        await cur.execute("UPDATE notifications SET status = 'summarised' WHERE id = ANY(%s)",
                          (ids[1:],))
        released += 1
        log.warning("alarm storm: %d held alerts summarised in one message to receiver=%s",
                    len(alerts), name)
    return released

"""Escalation: steps with delays until someone acknowledges, then reminders.

The first policy that matches an alert gives its schedule: the policy's steps (outbox
step 0, 1, …) at ``after_s`` from the alert's opening, then reminders (outbox step
100 + k) every ``remind_every_s``, to people only (a loudspeaker cannot acknowledge).
What is still to come lives in the ``escalations`` table as (next step, due time),
written in the same transaction as the messages of the step before it, so a restart
neither skips a step nor repeats one: a step's messages are outbox rows unique on
(alert, step, receiver). Due times come from the injected clock. An alert that is no
longer open or escalated (acknowledged, resolved, expired, suppressed) ends its
escalation at the next due time without sending anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from psycopg import AsyncConnection, AsyncCursor

from alerting.expiry import expire_stale
from alerting.inhibit import InhibitStage, released
from alerting.models import NotifyContext
from alerting.outbox import Pool, enqueue
from alerting.recipients import RecipientResolver
from alerting.silences import SilenceStage
from alerting.stages import Stage
from alerting.storm_gate import Outgoing, StormGate, release_held
from config.settings import AlertingSettings, EscalationPolicy
from shouwang.models import Alert, AlertStatus, Severity
from shouwang.retry import retry_until_done
from shouwang.store.alerts import get_alert, record_event, transition

__all__ = ["REMINDER_STEP_BASE", "EscalateStage", "Escalator", "ScheduledStep",
           "StepQueue", "schedule"]

log = logging.getLogger(__name__)

REMINDER_STEP_BASE = 100
_ESCALATING = (AlertStatus.OPEN, AlertStatus.ESCALATED)
# opened_at comes back from timestamptz rounded to the microsecond, up to half of one
# after the instant it was written at: without this slack a step due "now" looked due
# later and waited for the escalator's next tick (up to poll_s) instead of going at once.
_CLOCK_SLACK_S = 1e-3


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduledStep:
    index: int          # position in the schedule (escalations.next_step)
    outbox_step: int    # notifications.step
    after_s: float      # since the alert opened
    groups: tuple[str, ...]
    min_severity: Severity
    reminder: bool


def schedule(policy: EscalationPolicy) -> tuple[ScheduledStep, ...]:
    """The policy's steps, then its reminders (to every group of the steps before).

    >>> from config.settings import EscalationStep
    >>> p = EscalationPolicy(name="fire", steps=(EscalationStep(groups=("station",)),
    ...     EscalationStep(after_s=60, groups=("duty",))), remind_every_s=120, max_reminders=2)
    >>> [(s.outbox_step, s.after_s, s.groups) for s in schedule(p)]
    [(0, 0.0, ('station',)), (1, 60.0, ('duty',)), (101, 180.0, ('station', 'duty')), \
(102, 300.0, ('station', 'duty'))]
    """
    steps = [ScheduledStep(index=i, outbox_step=i, after_s=s.after_s, groups=s.groups,
                           min_severity=Severity[s.min_severity.upper()], reminder=False)
             for i, s in enumerate(policy.steps)]
    everyone = tuple(dict.fromkeys(g for s in policy.steps for g in s.groups))
    last = policy.steps[-1].after_s
    steps += [ScheduledStep(index=len(policy.steps) + k - 1, outbox_step=REMINDER_STEP_BASE + k,
                            after_s=last + k * policy.remind_every_s, groups=everyone,
                            min_severity=Severity.BLUE, reminder=True)
              for k in range(1, policy.max_reminders + 1)]
    return tuple(steps)


class _Policies:
    def __init__(self, settings: AlertingSettings) -> None:
        self._policies = settings.policies
        self._by_name = {p.name: p for p in settings.policies}
        self.steps = {p.name: schedule(p) for p in settings.policies}

    def policy_for(self, alert: Alert) -> EscalationPolicy | None:
        for policy in self._policies:
            if policy.matches(site=alert.site, hazard=alert.hazard, kind=alert.kind.value,
                              severity=alert.severity):
                return policy
        return None

    def groups_for(self, policy: str, step: ScheduledStep, alert: Alert) -> tuple[str, ...]:
        """The step's groups the alert's severity calls for (reminders: steps reached)."""
        if not step.reminder:
            return step.groups if alert.severity >= step.min_severity else ()
        return tuple(dict.fromkeys(
            g for s in self.steps[policy]
            if not s.reminder and alert.severity >= s.min_severity for g in s.groups))


@dataclass(frozen=True, slots=True, kw_only=True)
class _Planned:
    alert: Alert
    step: ScheduledStep
    groups: tuple[str, ...]


class StepQueue:
    """Routes planned steps to receivers and queues them through the storm gate."""

    def __init__(self, resolver: RecipientResolver, gate: StormGate) -> None:
        self._resolver = resolver
        self.gate = gate

    async def __call__(self, ctx: NotifyContext, planned: Sequence[_Planned]) -> int:
        """Queue every planned step; returns the number of rows to send now."""
        outgoing: list[Outgoing] = []
        for plan in planned:
            for receiver in self._resolver.receivers(plan.alert, plan.groups, ctx.now):
                if plan.step.reminder and receiver.channel == "broadcast":
                    continue  # reminders ask people to acknowledge; loudspeakers cannot
                outgoing.append(Outgoing(alert=plan.alert, receiver=receiver,
                                         step=plan.step.outbox_step,
                                         reminder=plan.step.reminder))
        return await self.gate(ctx, outgoing)


def next_due(steps: Sequence[ScheduledStep], after_index: int, base: float,
             now: float) -> float:
    """When the step after ``after_index`` is due: ``base`` + its delay, except that a
    reminder comes at least its interval after the step just taken — after downtime
    the overdue reminders are spread out again, not sent in one burst.

    >>> from config.settings import EscalationPolicy, EscalationStep
    >>> steps = schedule(EscalationPolicy(name="p", steps=(EscalationStep(groups=("a",)),),
    ...                                   remind_every_s=120, max_reminders=3))
    >>> next_due(steps, 1, base=0.0, now=120.0), next_due(steps, 1, base=0.0, now=1000.0)
    (240.0, 1120.0)
    """
    upcoming = steps[after_index + 1]
    due = base + upcoming.after_s
    if upcoming.reminder and after_index >= 0:
        due = max(due, now + upcoming.after_s - steps[after_index].after_s)
    return due


async def _set_next(cur: AsyncCursor[Any], alert: Alert, policy: str,
                    steps: Sequence[ScheduledStep], after_index: int, base: float,
                    now: float) -> None:
    """Schedule the step after ``after_index``; ``base`` is when the schedule started (the
    alert's opening, or the end of the silence that held it)."""
    if after_index + 1 >= len(steps):
        await cur.execute("DELETE FROM escalations WHERE alert_id = %s", (alert.id,))
        return
    upcoming = steps[after_index + 1]
    await cur.execute(
        "INSERT INTO escalations (alert_id, policy, next_step, due_at) "
        "VALUES (%s, %s, %s, to_timestamp(%s)) ON CONFLICT (alert_id) DO UPDATE "
        "SET policy = excluded.policy, next_step = excluded.next_step, due_at = excluded.due_at",
        (alert.id, policy, upcoming.index, next_due(steps, after_index, base, now)))


class EscalateStage:
    """In the alert's transaction: the steps due at once (step 0), and the schedule of the rest.

    Alerts without a policy pass on to the plain routes; a severity rise re-runs the
    steps already reached (new receivers only: the outbox is unique per step).
    """

    def __init__(self, settings: AlertingSettings, queue: StepQueue, *,
                 restart: bool = False) -> None:
        self._policies = _Policies(settings)
        self._queue = queue
        self._restart = restart  # the schedule starts now, not when the alert opened

    async def __call__(self, ctx: NotifyContext, alerts: Sequence[Alert]) -> Sequence[Alert]:
        unrouted: list[Alert] = []
        planned: list[_Planned] = []
        for alert in alerts:
            policy = self._policies.policy_for(alert)
            if policy is None:
                unrouted.append(alert)
                continue
            if alert.status not in _ESCALATING:
                continue
            steps = self._policies.steps[policy.name]
            base = ctx.now if self._restart else alert.opened_at
            reached = [s for s in steps
                       if not s.reminder and base + s.after_s <= ctx.now + _CLOCK_SLACK_S]
            planned += [_Planned(alert=alert, step=s,
                                 groups=self._policies.groups_for(policy.name, s, alert))
                        for s in reached]
            await ctx.cur.execute("SELECT next_step FROM escalations WHERE alert_id = %s",
                                  (alert.id,))
            if await ctx.cur.fetchone() is None and alert.status is AlertStatus.OPEN:
                await _set_next(ctx.cur, alert, policy.name, steps,
                                reached[-1].index if reached else -1, base, ctx.now)
        if planned:
            await self._queue(ctx, planned)
        return unrouted


_DUE = """
SELECT alert_id, policy, next_step, extract(epoch FROM due_at) FROM escalations
WHERE due_at <= to_timestamp(%s)
ORDER BY due_at, alert_id LIMIT %s FOR UPDATE SKIP LOCKED
"""
# Alerts a silence held whose silence has ended (expired or cancelled) while they still fire.
_UNSILENCED = """
SELECT a.id FROM alerts a LEFT JOIN devices d ON d.id = a.device_id
WHERE a.status = 'suppressed'
  AND (SELECT e.action FROM alert_events e WHERE e.alert_id = a.id
       AND e.to_status = 'suppressed' ORDER BY e.at DESC, e.id DESC LIMIT 1) = 'silenced'
  AND NOT EXISTS (
    SELECT 1 FROM silences s WHERE s.site = a.site AND s.cancelled_at IS NULL
      AND s.starts_at <= to_timestamp(%(now)s) AND s.ends_at > to_timestamp(%(now)s)
      AND (s.device_id IS NULL OR s.device_id = a.device_id)
      AND (s.building IS NULL OR s.building = coalesce(d.building, ''))
      AND (cardinality(s.hazards) = 0 OR a.hazard = ANY(s.hazards)))
ORDER BY a.id LIMIT %(limit)s FOR UPDATE OF a SKIP LOCKED
"""
# Messages their primary has not delivered within its fallback delay, and that the
# fallback does not have yet: each is rendered again for the fallback's own channel.
_FALLBACK_DUE = """
SELECT n.alert_id, n.step, n.covers, f.fallback
FROM notifications n
JOIN unnest(%(primaries)s::text[], %(fallbacks)s::text[],
            %(after)s::float8[]) AS f(primary_receiver, fallback, after_s)
  ON f.primary_receiver = n.receiver
WHERE n.status NOT IN ('sent', 'withdrawn') AND n.attempts > 0
  AND n.created_at >= to_timestamp(%(now)s) - interval '1 day'
  AND n.created_at + make_interval(secs => f.after_s) <= to_timestamp(%(now)s)
  AND NOT EXISTS (SELECT 1 FROM notifications m WHERE m.alert_id = n.alert_id
                  AND m.step = n.step AND m.receiver = f.fallback)
ORDER BY n.id LIMIT %(limit)s
"""


class Escalator:
    """Fires due escalation steps and fallbacks; ``on_changed`` publishes alerts it changed."""

    def __init__(self, settings: AlertingSettings, queue: StepQueue,
                 resolver: RecipientResolver, *, reopened: Stage, wake: asyncio.Event,
                 on_changed: Callable[[list[Alert]], Awaitable[None]],
                 clock: Callable[[], float] = time.time, poll_s: float = 0.2,
                 batch: int = 200, housekeeping_s: float = 1.0) -> None:
        self._policies = _Policies(settings)
        self._inhibit_rules = settings.inhibit_rules
        self._expire_after_s = settings.expire_after_s
        # Releasing inhibited alerts and expiring stale ones need no 0.2 s precision.
        self._housekeeping_s = housekeeping_s
        self._next_housekeeping = float("-inf")
        self._queue = queue
        self._pre = (InhibitStage(settings.inhibit_rules), SilenceStage())
        self._reopened = reopened  # the chain for alerts whose silence ended
        self._wake = wake
        self._on_changed = on_changed
        self._clock = clock
        self._poll_s = poll_s
        self._batch = batch
        self._receivers = {r.name: r for r in settings.receivers}
        fallbacks = sorted(resolver.fallbacks.items())
        self._fallback_args = {
            "primaries": [p for p, _ in fallbacks],
            "fallbacks": [f.receiver for _, f in fallbacks],
            "after": [f.after_s for _, f in fallbacks],
        }

    async def run(self, pool: Pool, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = self._clock()  # once per tick
            changed, queued, full = await retry_until_done(
                partial(self._tick, pool, now), stop, what="escalation")
            if queued:
                self._wake.set()
            if changed:
                await self._on_changed(changed)
            if not full:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._poll_s)

    async def _tick(self, pool: Pool, now: float) -> tuple[list[Alert], int, bool]:
        changed: list[Alert] = []
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(_DUE, (now, self._batch))
            due = await cur.fetchall()
            ctx = NotifyContext(now=now, cur=cur)
            planned: list[_Planned] = []
            for alert_id, policy_name, index, due_at in due:
                alert = await get_alert(conn, alert_id)
                steps = self._policies.steps.get(policy_name, ())
                if alert.status not in _ESCALATING or index >= len(steps):
                    await cur.execute("DELETE FROM escalations WHERE alert_id = %s", (alert_id,))
                    log.debug("alert=%d escalation ends: %s", alert_id, alert.status.value)
                    continue
                passed: Sequence[Alert] = [alert]
                for stage in self._pre:
                    passed = await stage(ctx, passed)
                if not passed:  # suppressed now: its escalation ends
                    await cur.execute("DELETE FROM escalations WHERE alert_id = %s", (alert_id,))
                    changed.append(await get_alert(conn, alert_id))
                    continue
                step = steps[index]
                groups = self._policies.groups_for(policy_name, step, alert)
                planned.append(_Planned(alert=alert, step=step, groups=groups))
                note = f"step {step.outbox_step}: {', '.join(groups) or '(none at this level)'}"
                if step.reminder:
                    await record_event(cur, alert.id, now=now, actor="system",
                                       source="escalation", action="reminded",
                                       status=alert.status, note=note)
                else:
                    alert = await transition(conn, alert.id, AlertStatus.ESCALATED,
                                             actor="system", source="escalation",
                                             action="escalated", note=note, now=now)
                    changed.append(alert)
                log.info("alert=%d %s %s", alert.id,
                         "reminder" if step.reminder else "escalated", note)
                await _set_next(cur, alert, policy_name, steps, index,
                                float(due_at) - step.after_s, now)
            queued = await self._queue(ctx, planned) if planned else 0
            await cur.execute(_UNSILENCED, {"now": now, "limit": self._batch})
            reopened = []
            for (alert_id,) in await cur.fetchall():
                reopened.append(await transition(
                    conn, alert_id, AlertStatus.OPEN, actor="system", source="silence",
                    action="unsilenced", note="the silence ended while it still fires",
                    now=now))
                log.info("alert=%d open again: its silence ended", alert_id)
            if now >= self._next_housekeeping:
                self._next_housekeeping = now + self._housekeeping_s
                for alert_id in await released(cur, self._inhibit_rules, self._batch):
                    reopened.append(await transition(
                        conn, alert_id, AlertStatus.OPEN, actor="system", source="inhibit",
                        action="released", note="the alert that inhibited it has ended",
                        now=now))
                    log.info("alert=%d open again: what inhibited it has ended", alert_id)
                if self._expire_after_s is not None:
                    changed += await expire_stale(conn, now=now, max_age_s=self._expire_after_s,
                                                  limit=self._batch)
            if reopened:
                await self._reopened(ctx, reopened)
                changed += [await get_alert(conn, a.id) for a in reopened]
                queued += len(reopened)
            queued += await release_held(cur, conn, self._receivers,
                                         self._queue.gate.composer, now=now,
                                         limit=self._batch)
            if self._fallback_args["primaries"]:
                queued += await self._fall_back(cur, conn, now)
        return changed, queued, len(due) == self._batch

    async def _fall_back(self, cur: AsyncCursor[Any], conn: AsyncConnection[Any],
                         now: float) -> int:
        await cur.execute(_FALLBACK_DUE, {"now": now, "limit": self._batch,
                                          **self._fallback_args})
        queued = 0
        composer = self._queue.gate.composer
        for alert_id, step, covers, name in await cur.fetchall():
            receiver = self._receivers[name]
            alert = await get_alert(conn, alert_id)
            if covers:  # a storm summary: the fallback gets the summary, in its own form
                body = composer.summary([await get_alert(conn, a) for a in covers], receiver)
            else:
                body = composer.body(alert, receiver, now,
                                     reminder=step >= REMINDER_STEP_BASE)
            queued += await enqueue(cur, alert, step, [receiver], {receiver.channel: body},
                                    now, covers=covers)
        if queued:
            log.warning("%d message(s) not delivered in time: sent to the fallback "
                        "receiver", queued)
        return queued

"""What the board shows beside each alert: its assignee and where its escalation stands.

Both are read in one query each for a whole list of alerts. The escalation comes from
alerting's ``escalations`` table (next step, due time) read against the same policies the
escalator uses, so the board's countdown ends when that step really fires.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from psycopg import AsyncConnection

from alerting.escalation import ScheduledStep, schedule
from config.settings import EscalationPolicy
from console.models import Assignment, BoardNotes, EscalationState, NextStep
from shouwang.models import Alert, AlertStatus

__all__ = ["EscalationRow", "Policies", "board_notes", "escalation_state"]

_ESCALATING = (AlertStatus.OPEN, AlertStatus.ESCALATED)
_ASSIGNMENTS = """
SELECT DISTINCT ON (alert_id) alert_id, assignee, assigned_by, extract(epoch FROM at), note,
       source
FROM alert_assignments WHERE alert_id = ANY(%s) ORDER BY alert_id, at DESC, id DESC
"""
_ESCALATIONS = """
SELECT alert_id, policy, next_step, extract(epoch FROM due_at) FROM escalations
WHERE alert_id = ANY(%s)
"""


class EscalationRow(NamedTuple):
    policy: str
    next_step: int   # index into the policy's schedule (steps, then reminders)
    due_at: float


class Policies:
    """The escalation policies of the config, with their schedules worked out once."""

    def __init__(self, policies: Iterable[EscalationPolicy]) -> None:
        self._policies = tuple(policies)
        self._by_name = {p.name: p for p in self._policies}
        self._schedules = {p.name: schedule(p) for p in self._policies}

    def for_alert(self, alert: Alert, row: EscalationRow | None) -> EscalationPolicy | None:
        if row is not None and row.policy in self._by_name:
            return self._by_name[row.policy]
        for policy in self._policies:  # the first that matches, as the escalator picks
            if policy.matches(site=alert.site, hazard=alert.hazard, kind=alert.kind.value,
                              severity=alert.severity):
                return policy
        return None

    def schedule(self, policy: EscalationPolicy) -> tuple[ScheduledStep, ...]:
        return self._schedules[policy.name]


def _paged(step: ScheduledStep, alert: Alert) -> tuple[str, ...]:
    return step.groups if alert.severity >= step.min_severity else ()


def escalation_state(alert: Alert, policies: Policies, row: EscalationRow | None,
                     now: float) -> EscalationState | None:
    """Where ``alert`` stands in its policy; None when no policy covers it.

    With a row the escalator's own bookkeeping says which step comes next; without one
    (never scheduled, or ended) the steps reached are those due before the alert was
    acknowledged or resolved.

    >>> from config.settings import EscalationStep
    >>> from shouwang.models import DetectionKind, Location, Severity
    >>> p = Policies([EscalationPolicy(name="fire", steps=(
    ...     EscalationStep(groups=("station",)), EscalationStep(after_s=60, groups=("duty",))),
    ...     max_reminders=1)])
    >>> a = Alert(id=1, site="s", device_id="d", hazard="gas", kind=DetectionKind.HAZARD,
    ...           severity=Severity.RED, status=AlertStatus.OPEN, opened_at=0.0,
    ...           location=Location())
    >>> s = escalation_state(a, p, EscalationRow("fire", 1, 60.0), now=10.0)
    >>> (s.step, s.steps, s.groups, s.next.number, s.next.groups, s.next.due_at)
    (1, 2, ('station',), 2, ('duty',), 60.0)
    >>> escalation_state(a, p, None, now=100.0).step
    2
    """
    policy = policies.for_alert(alert, row)
    if policy is None:
        return None
    steps = policies.schedule(policy)
    count = len(policy.steps)
    if row is not None:
        reached = min(row.next_step, count)
    else:
        until = alert.acknowledged_at or alert.resolved_at or now
        reached = sum(1 for s in steps[:count] if alert.opened_at + s.after_s <= until)
    groups = _paged(steps[reached - 1], alert) if reached else ()
    upcoming = None
    if row is not None and alert.status in _ESCALATING and row.next_step < len(steps):
        step = steps[row.next_step]
        if step.reminder:
            everyone = tuple(dict.fromkeys(g for s in steps[:count] for g in _paged(s, alert)))
            upcoming = NextStep(number=row.next_step - count + 1, of=len(steps) - count,
                                reminder=True, groups=everyone, due_at=row.due_at)
        else:
            upcoming = NextStep(number=row.next_step + 1, of=count, reminder=False,
                                groups=_paged(step, alert), due_at=row.due_at)
    return EscalationState(policy=policy.name, step=reached, steps=count, groups=groups,
                           next=upcoming)


async def board_notes(conn: AsyncConnection[Any],  # Any: tuple rows
                      alerts: Sequence[Alert], policies: Policies,
                      now: float) -> Mapping[int, BoardNotes]:
    """Assignee and escalation of each alert, by alert id (two queries in all)."""
    if not alerts:
        return {}
    ids = [a.id for a in alerts]
    cur = await conn.execute(_ASSIGNMENTS, (ids,))
    assigned = {r[0]: Assignment(assignee=r[1], assigned_by=r[2], at=float(r[3]), note=r[4],
                                 source=r[5]) for r in await cur.fetchall()}
    cur = await conn.execute(_ESCALATIONS, (ids,))
    rows = {r[0]: EscalationRow(r[1], int(r[2]), float(r[3])) for r in await cur.fetchall()}
    return {a.id: BoardNotes(assignment=assigned.get(a.id),
                             escalation=escalation_state(a, policies, rows.get(a.id), now))
            for a in alerts}

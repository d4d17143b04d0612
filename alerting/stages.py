"""The alert pipeline as a chain of small stages sharing one interface.

The service's chain (``alerting/service.py``): dedup happens first, when ``upsert_live``
opens or updates the one live alert per device and hazard; then inhibit
(``inhibit.py``) → silence (``silences.py``) → escalate (``escalation.py``: the first
matching policy's recipients, drills to drill groups only, the outbox) →
``QueueNotifications`` for alerts no policy covers (the plain routes). Both queue through
the storm gate (``storm_gate.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from alerting.models import NotifyContext
from alerting.router import Router
from alerting.storm_gate import Outgoing, StormGate
from shouwang.models import Alert, DetectionKind

__all__ = ["QueueNotifications", "Stage", "chain"]

log = logging.getLogger(__name__)


class Stage(Protocol):
    async def __call__(self, ctx: NotifyContext, alerts: Sequence[Alert]) -> Sequence[Alert]:
        """Do this stage's part; return the alerts the next stage should see."""
        ...


class _Chain:
    def __init__(self, stages: Sequence[Stage]) -> None:
        self._stages = tuple(stages)

    async def __call__(self, ctx: NotifyContext, alerts: Sequence[Alert]) -> Sequence[Alert]:
        for stage in self._stages:
            if not alerts:
                break
            alerts = await stage(ctx, alerts)
        return alerts


def chain(*stages: Stage) -> Stage:
    """Run ``stages`` in order, stopping as soon as one passes on no alerts."""
    return _Chain(stages)


class QueueNotifications:
    """Route each alert and queue one outbox row per receiver, in the alerts' transaction,
    through the storm gate.

    Passes on the alerts that some route matched.
    """

    def __init__(self, router: Router, gate: StormGate) -> None:
        self._router = router
        self._gate = gate

    async def __call__(self, ctx: NotifyContext, alerts: Sequence[Alert]) -> Sequence[Alert]:
        routed: list[Alert] = []
        outgoing: list[Outgoing] = []
        for alert in alerts:
            receivers = self._router.receivers_for(alert)
            if not receivers:
                # A hazard nobody hears about is a config gap; unrouted health and anomaly
                # alerts are normal (they wait on the console).
                level = logging.WARNING if alert.kind is DetectionKind.HAZARD else logging.DEBUG
                log.log(level, "no route matches alert=%d site=%s hazard=%s severity=%s",
                        alert.id, alert.site, alert.hazard, alert.severity.label)
                continue
            routed.append(alert)
            # No acknowledgement links: plain routes name endpoints, not people.
            outgoing += [Outgoing(alert=alert, receiver=r, step=ctx.step, link=False)
                         for r in receivers]
        await self._gate(ctx, outgoing)
        return routed

"""The alert pipeline as a chain of small stages sharing one interface.

The service's chain (``alerting/service.py``): dedup happens first, when ``upsert_live``
opens or updates the one live alert per device and hazard; then inhibit
(``inhibit.py``) → silence (``silences.py``) → escalate (``escalation.py``: the first
matching policy's recipients, drills to drill groups only, a storm summarised, the
outbox) → ``QueueNotifications`` for alerts no policy covers (the plain routes).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from alerting.models import Language, NotifyContext
from alerting.outbox import enqueue
from alerting.router import Router
from alerting.templates import body_for, render
from shouwang.models import Alert, DetectionKind, Device, Site

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
    """Route each alert and queue one outbox row per receiver, in the alerts' transaction.

    Passes on the alerts that got at least one new row.
    """

    def __init__(self, router: Router, *, sites: Mapping[str, Site],
                 devices: Mapping[str, Device], language: Language = "zh") -> None:
        self._router = router
        self._sites = sites
        self._devices = devices
        self._language = language

    async def __call__(self, ctx: NotifyContext, alerts: Sequence[Alert]) -> Sequence[Alert]:
        queued: list[Alert] = []
        for alert in alerts:
            receivers = self._router.receivers_for(alert)
            if not receivers:
                # A hazard nobody hears about is a config gap; unrouted health alerts are
                # normal (they wait on the console).
                level = logging.WARNING if alert.kind is DetectionKind.HAZARD else logging.DEBUG
                log.log(level, "no route matches alert=%d site=%s hazard=%s severity=%s",
                        alert.id, alert.site, alert.hazard, alert.severity.label)
                continue
            text = render(alert, site=self._sites.get(alert.site),
                          device=self._devices.get(alert.device_id), language=self._language)
            bodies: dict[str, str] = {r.channel: body_for(r.channel, text) for r in receivers}
            if await enqueue(ctx.cur, alert, ctx.step, receivers, bodies, ctx.now):
                queued.append(alert)
        return queued

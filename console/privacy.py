"""Residents' health data in the console: only roles that need it see values and series.

``privacy.health_roles`` (admin, duty officer, elderly-care staff by default) see a
wearable's heart rate and the rest. Other roles (fire station, viewer) still see that a
wearable alert exists, its hazard, severity and place (a fire station must find the
resident who fell), but no value, no message beyond the SOS/fall text, no notification
text, and no health series: asking for one answers 403. Nor do they read what anyone
wrote on a wearable's alert (acknowledging, resolving, assigning, silencing): that is
free text about the resident ("has a heart condition, took nitroglycerin"); they see
that it happened, who and when, and ``NOTE_HIDDEN_TEXT`` or ``note_hidden`` instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from starlette.exceptions import HTTPException
from starlette.requests import Request

from config.settings import Settings
from console.users import User
from shouwang.catalog import DeviceType
from shouwang.models import Alert, Device, Notification
from shouwang.store.alerts import AlertEvent
from simulators.drill_record import TimelineEntry

__all__ = ["NOTE_HIDDEN_TEXT", "RESTRICTED_TEXT", "HealthPolicy", "health_policy"]

# What a role without health access reads instead of a wearable alert's details.
RESTRICTED_TEXT = "健康数据仅限授权人员查看 (health details restricted to authorised staff)"
# What a role without health access reads instead of a note on a wearable's alert.
NOTE_HIDDEN_TEXT = "(备注仅护理人员可见 / note visible to care staff only)"
# Alerts whose own text says only what responders must know, and no measured value.
_PLAIN_HAZARDS = frozenset({"sos", "fall"})
_STATE_KEY = "health_policy"
# The history row a detection opened the alert with (shouwang.store.alerts.upsert_live).
_OPENED = "opened"
_SYSTEM = "system"


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthPolicy:
    roles: frozenset[str]
    metrics: frozenset[str]
    wearables: frozenset[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> HealthPolicy:
        return cls(roles=frozenset(settings.privacy.health_roles),
                   metrics=frozenset(settings.privacy.health_metrics),
                   wearables=frozenset(d.id for d in settings.devices
                                       if d.type is DeviceType.WEARABLE))

    def sees_health(self, user: User) -> bool:
        return user.role.value in self.roles

    def _restricted(self, user: User, device_id: str) -> bool:
        return device_id in self.wearables and not self.sees_health(user)

    def alert(self, user: User, alert: Alert) -> Alert:
        """The alert as ``user`` may see it."""
        if not self._restricted(user, alert.device_id):
            return alert
        message = alert.message if alert.hazard in _PLAIN_HAZARDS else RESTRICTED_TEXT
        return dataclasses.replace(alert, last_value=None, message=message)

    def hides_notes(self, user: User, alert: Alert) -> bool:
        """Whether what people wrote on ``alert`` (its assignment's note, its history's
        notes) is kept from ``user``: anything may be said there about the resident."""
        return self._restricted(user, alert.device_id)

    def hides_note(self, user: User, alert: Alert, event: AlertEvent) -> bool:
        """Whether ``user`` reads ``event``'s note as hidden. Every note on a wearable's
        alert is, whoever wrote it (a silence's reason reaches the history as the system's
        note), but the text an SOS or fall opened with: the alert's message shows it."""
        if not event.note or not self.hides_notes(user, alert):
            return False
        return not (event.action == _OPENED and event.actor == _SYSTEM
                    and alert.hazard in _PLAIN_HAZARDS)

    def timeline(self, user: User, entries: Sequence[TimelineEntry]) -> list[TimelineEntry]:
        """A drill's timeline as ``user`` may see it: the details of a wearable's entries
        (message texts, detection messages) carry values, and its actions' notes what
        people wrote about the resident."""
        if self.sees_health(user):
            return list(entries)
        return [self._timeline_entry(e) for e in entries]

    def _timeline_entry(self, entry: TimelineEntry) -> TimelineEntry:
        if not entry.detail or entry.device_id not in self.wearables:
            return entry
        if entry.actor:  # someone acted on the alert: the detail is their note
            return dataclasses.replace(entry, detail=NOTE_HIDDEN_TEXT)
        if entry.hazard in _PLAIN_HAZARDS:
            return entry
        return dataclasses.replace(entry, detail=RESTRICTED_TEXT)

    def is_health_series(self, device: Device, metric: str) -> bool:
        return device.type is DeviceType.WEARABLE and metric in self.metrics

    def require_series(self, user: User, device: Device, metric: str) -> None:
        """403 when ``metric`` of ``device`` is health data ``user`` may not see."""
        if self.is_health_series(device, metric) and not self.sees_health(user):
            raise HTTPException(403, f"role {user.role.value} may not see health data "
                                     f"({metric})")

    def metric_choices(self, user: User, device: Device,
                       choices: Sequence[dict[str, str]]) -> list[dict[str, str]]:
        """The chartable metrics ``user`` may open (each choice has a ``key``)."""
        if self.sees_health(user):
            return list(choices)
        return [c for c in choices if not self.is_health_series(device, c["key"])]

    async def notifications(self, conn: AsyncConnection[Any],  # Any: tuple rows
                            user: User, found: list[Notification]) -> list[Notification]:
        """Messages about wearable alerts lose their text (it carries values and names)."""
        if self.sees_health(user) or not found or not self.wearables:
            return found
        cur = await conn.execute(
            "SELECT id FROM alerts WHERE id = ANY(%s) AND device_id = ANY(%s) "
            "AND hazard <> ALL(%s)",
            (sorted({n.alert_id for n in found}), sorted(self.wearables),
             sorted(_PLAIN_HAZARDS)))
        hidden = {int(row[0]) for row in await cur.fetchall()}
        return [dataclasses.replace(n, body=RESTRICTED_TEXT, last_error="")
                if n.alert_id in hidden else n for n in found]


def health_policy(request: Request) -> HealthPolicy:
    """The app's policy, built from its settings on first use."""
    state = request.app.state
    policy: HealthPolicy | None = getattr(state, _STATE_KEY, None)
    if policy is None:
        policy = HealthPolicy.from_settings(request.app.state.console.settings)
        setattr(state, _STATE_KEY, policy)
    return policy

"""Who hears about an alert at one escalation step: groups → people → their preferred receiver.

A person is skipped when off duty (``on_call``), when the alert is outside their scope
(a family hears only of its relative's devices, a building manager only of their
buildings), and, for drills, when their group does not take part in drills. Each
person gets their first receiver; ``fallbacks`` says which receiver stands in when
that one fails.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from config.settings import AlertingSettings, OnCallShift, Receiver, Recipient
from shouwang.models import Alert

__all__ = ["Fallback", "RecipientResolver", "on_duty"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Fallback:
    receiver: str  # used instead …
    after_s: float  # … when the primary has not delivered this long after it was queued


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def on_duty(shifts: Sequence[OnCallShift], at: dt.datetime) -> bool:
    """True when ``at`` (local time) falls in a shift; no shifts = always on duty.

    >>> night = OnCallShift(start="20:00", end="08:00")
    >>> on_duty([night], dt.datetime(2026, 11, 26, 23, 0)), on_duty([night],
    ...     dt.datetime(2026, 11, 26, 7, 59)), on_duty([night], dt.datetime(2026, 11, 26, 12, 0))
    (True, True, False)
    """
    if not shifts:
        return True
    minute = at.hour * 60 + at.minute
    for shift in shifts:
        start, end = _minutes(shift.start), _minutes(shift.end)
        if start <= end:
            if at.weekday() in shift.days and start <= minute < end:
                return True
        elif ((at.weekday() in shift.days and minute >= start)
              or ((at.weekday() - 1) % 7 in shift.days and minute < end)):
            return True  # a night shift belongs to the day it started
    return False


def _in_scope(recipient: Recipient, alert: Alert) -> bool:
    if recipient.devices and alert.device_id not in recipient.devices:
        return False
    return not recipient.buildings or alert.location.building in recipient.buildings


class RecipientResolver:
    def __init__(self, settings: AlertingSettings) -> None:
        self._groups = {g.name: g for g in settings.groups}
        self._receivers = {r.name: r for r in settings.receivers}
        self._zone = ZoneInfo(settings.timezone)
        fallbacks: dict[str, Fallback] = {}
        for group in settings.groups:
            for person in group.recipients:
                for primary, backup in zip(person.receivers, person.receivers[1:],
                                           strict=False):
                    fallbacks.setdefault(primary, Fallback(receiver=backup,
                                                           after_s=person.fallback_after_s))
        self.fallbacks: Mapping[str, Fallback] = fallbacks

    def has_drill_groups(self, groups: Sequence[str]) -> bool:
        return any(self._groups[g].drill for g in groups)

    def receivers(self, alert: Alert, groups: Sequence[str], now: float) -> list[Receiver]:
        """Each in-scope, on-duty person's preferred receiver, each receiver once."""
        local = dt.datetime.fromtimestamp(now, self._zone)
        chosen: dict[str, Receiver] = {}
        for name in groups:
            group = self._groups[name]
            if alert.drill and not group.drill:
                continue  # drills go to drill recipients only
            for person in group.recipients:
                if _in_scope(person, alert) and on_duty(person.on_call, local):
                    receiver = self._receivers[person.receivers[0]]
                    chosen.setdefault(receiver.name, receiver)
        return list(chosen.values())

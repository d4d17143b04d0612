"""What the console shows, as frozen dataclasses (the JSON shapes live in ``views``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shouwang.models import Device

__all__ = ["Assignment", "BoardNotes", "DeviceState", "DeviceStatus", "EscalationState",
           "NextStep"]


class DeviceStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    UNKNOWN = "unknown"  # registered, never heard from


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceState:
    """A registered device and how it is doing now."""

    device: Device
    status: DeviceStatus
    last_seen: float | None = None  # epoch seconds
    battery: float | None = None    # percent


@dataclass(frozen=True, slots=True, kw_only=True)
class Assignment:
    """Who an alert is assigned to now (the newest assignment), by whom, when."""

    assignee: str
    assigned_by: str
    at: float  # epoch seconds
    note: str
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NextStep:
    """What the escalation does next, and when, if nobody acknowledges first."""

    number: int             # 1-based: the policy's step, or the reminder's number
    of: int                 # the policy's steps, or its reminders
    reminder: bool
    groups: tuple[str, ...]
    due_at: float           # epoch seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class EscalationState:
    """Where an alert is in its escalation policy (``step`` of ``steps``; 0: none yet)."""

    policy: str
    step: int
    steps: int
    groups: tuple[str, ...]  # who the current step paged (empty: nobody at this severity)
    next: NextStep | None    # None once acknowledged, ended, or every step and reminder sent


@dataclass(frozen=True, slots=True, kw_only=True)
class BoardNotes:
    """What the board shows beside an alert's own fields."""

    assignment: Assignment | None = None
    escalation: EscalationState | None = None

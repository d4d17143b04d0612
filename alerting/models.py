"""The alerting package's own data: rendered texts, the stage context, claimed outbox rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from psycopg import AsyncCursor

from shouwang.models import Severity

__all__ = ["AlertText", "Language", "NotifyContext", "OutboxItem"]

Language = Literal["zh", "en"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertText:
    """One alert in words, in one language."""

    title: str
    sms: str        # short: one 70-character segment in Chinese, 160 in English
    broadcast: str  # spoken style, for community loudspeakers and TTS
    long: str       # every detail, for email, chat apps and webhooks


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyContext:
    """What every stage of one flush shares; ``now`` is read once, before the first stage."""

    now: float
    # The transaction the alerts were written in: what a stage queues commits with them.
    cur: AsyncCursor[Any]  # Any: tuple rows
    step: int = 0          # 0 = first notice; escalation steps will count up from here


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxItem:
    """A notification row claimed for sending, with what its title is made from."""

    id: int
    alert_id: int
    receiver: str
    channel: str
    body: str
    attempts: int  # attempts made before this one
    hazard: str
    severity: Severity
    drill: bool
    site_name: str

"""Alerting: detections become alerts, alerts become messages (SMS, broadcast, apprise).

The pipeline per batch: dedupe (one live alert per device and hazard) → inhibit →
silence → escalate (policy: recipients, drill filter, storm summary, outbox) → plain
routes for alerts no policy covers → the dispatcher sends (rate limits, timeouts,
retries, fallback) → every result recorded. The escalator fires later steps and
reminders from the ``escalations`` table.
"""

from alerting.ack_links import AckLinks, BadLink
from alerting.cap import NotPublic, cap_feed, cap_message_of, message_for
from alerting.escalation import EscalateStage, Escalator, StepQueue, schedule
from alerting.inhibit import InhibitStage
from alerting.levels import LEVELS, Level, level_of
from alerting.models import AlertText, NotifyContext, OutboxItem
from alerting.notifiers import AppriseNotifier, Notifier, NotifyError, validate_urls
from alerting.outbox import Dispatcher, claim_due, enqueue, retry_delay
from alerting.recipients import RecipientResolver
from alerting.router import Router
from alerting.service import AlertingService
from alerting.silences import Silence, SilenceStage, cancel_silence, create_silence
from alerting.stages import QueueNotifications, Stage, chain
from alerting.templates import body_for, render, render_title

__all__ = [
    "LEVELS",
    "AckLinks",
    "AlertText",
    "AlertingService",
    "AppriseNotifier",
    "BadLink",
    "Dispatcher",
    "EscalateStage",
    "Escalator",
    "InhibitStage",
    "Level",
    "NotPublic",
    "Notifier",
    "NotifyContext",
    "NotifyError",
    "OutboxItem",
    "QueueNotifications",
    "RecipientResolver",
    "Router",
    "Silence",
    "SilenceStage",
    "Stage",
    "StepQueue",
    "body_for",
    "cancel_silence",
    "cap_feed",
    "cap_message_of",
    "chain",
    "claim_due",
    "create_silence",
    "enqueue",
    "level_of",
    "message_for",
    "render",
    "render_title",
    "retry_delay",
    "schedule",
    "validate_urls",
]

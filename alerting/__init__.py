"""Alerting: detections become alerts, alerts become messages (SMS, broadcast, apprise)."""

from alerting.models import AlertText, NotifyContext, OutboxItem
from alerting.notifiers import AppriseNotifier, Notifier, NotifyError, validate_urls
from alerting.outbox import Dispatcher, claim_due, enqueue, retry_delay
from alerting.router import Router
from alerting.service import AlertingService
from alerting.stages import QueueNotifications, Stage, chain
from alerting.templates import body_for, render, render_title

__all__ = [
    "AlertText",
    "AlertingService",
    "AppriseNotifier",
    "Dispatcher",
    "Notifier",
    "NotifyContext",
    "NotifyError",
    "OutboxItem",
    "QueueNotifications",
    "Router",
    "Stage",
    "body_for",
    "chain",
    "claim_due",
    "enqueue",
    "render",
    "render_title",
    "retry_delay",
    "validate_urls",
]

"""Alerting: detections become alerts, alerts become messages (SMS, broadcast, apprise).

The pipeline per batch: dedupe (one live alert per device and hazard) → inhibit →
silence → escalate (policy: recipients, drill filter, storm summary, outbox) → plain
routes for alerts no policy covers → the dispatcher sends (rate limits, timeouts,
retries, fallback) → every result recorded. The escalator fires later steps and
reminders from the ``escalations`` table, summarises storms held past their window,
and hands undelivered messages to fallbacks in the fallback's own form. Each body is
composed for its channel (``messages.py``); loudspeakers get a structured message with
priority and zone (``broadcast.py``) and, when espeak-ng is installed, a WAV
(``speech.py``) kept in the database (``audio_store.py``) for the console to serve.
"""

from alerting.ack_links import AckLinks, BadLink
from alerting.broadcast import BroadcastMessage, Zone, broadcast_message, priority_of
from alerting.cap import NotPublic, cap_feed, cap_message_of, message_for
from alerting.escalation import EscalateStage, Escalator, StepQueue, schedule
from alerting.inhibit import InhibitStage
from alerting.levels import LEVELS, Level, level_of
from alerting.messages import MessageComposer
from alerting.models import AlertText, NotifyContext, OutboxItem
from alerting.notifiers import AppriseNotifier, Notifier, NotifyError, validate_urls
from alerting.outbox import Dispatcher, claim_due, enqueue, retry_delay
from alerting.recipients import RecipientResolver
from alerting.router import Router
from alerting.service import AlertingService
from alerting.silences import Silence, SilenceStage, cancel_silence, create_silence
from alerting.speech import AudioClip, SpeechSynthesizer, find_speech
from alerting.stages import QueueNotifications, Stage, chain
from alerting.storm_gate import Outgoing, StormGate, release_held
from alerting.templates import body_for, render, render_title

__all__ = [
    "LEVELS",
    "AckLinks",
    "AlertText",
    "AlertingService",
    "AppriseNotifier",
    "AudioClip",
    "BadLink",
    "BroadcastMessage",
    "Dispatcher",
    "EscalateStage",
    "Escalator",
    "InhibitStage",
    "Level",
    "MessageComposer",
    "NotPublic",
    "Notifier",
    "NotifyContext",
    "NotifyError",
    "OutboxItem",
    "Outgoing",
    "QueueNotifications",
    "RecipientResolver",
    "Router",
    "Silence",
    "SilenceStage",
    "SpeechSynthesizer",
    "Stage",
    "StepQueue",
    "StormGate",
    "Zone",
    "body_for",
    "broadcast_message",
    "cancel_silence",
    "cap_feed",
    "cap_message_of",
    "chain",
    "claim_due",
    "create_silence",
    "enqueue",
    "find_speech",
    "level_of",
    "message_for",
    "priority_of",
    "release_held",
    "render",
    "render_title",
    "retry_delay",
    "schedule",
    "validate_urls",
]

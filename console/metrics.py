"""Prometheus metrics of the console process, served on ``/metrics``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = [
    "ALERT_ACTIONS",
    "FEED_MESSAGES",
    "LIVE_DROPPED",
    "LIVE_VIEWERS",
    "PUBLISH_FAILURES",
]

ALERT_ACTIONS = Counter(
    "shouwang_console_alert_actions_total",
    "Acknowledge/resolve requests from the console, by outcome",
    ["action", "outcome"],
)
FEED_MESSAGES = Counter(
    "shouwang_console_feed_messages_total",
    "alert-updates messages read from the bus, by outcome",
    ["outcome"],
)
LIVE_VIEWERS = Gauge(
    "shouwang_console_live_viewers",
    "Browsers connected to the live alert stream",
)
LIVE_DROPPED = Counter(
    "shouwang_console_live_dropped_total",
    "Alert updates dropped because a viewer read too slowly",
)
PUBLISH_FAILURES = Counter(
    "shouwang_console_publish_failures_total",
    "Alert changes saved but not published on alert-updates",
)

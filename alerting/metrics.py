"""Prometheus metrics of the alerting path (one registry per process)."""

from prometheus_client import Counter, Histogram

__all__ = ["ALERTS_OPENED", "BAD_MESSAGES", "NOTIFICATIONS", "SEND_SECONDS"]

ALERTS_OPENED = Counter("shouwang_alerts_opened_total", "alerts opened",
                        ["hazard", "severity"])
# result: sent | retry (failed, will try again) | failed (gave up)
NOTIFICATIONS = Counter("shouwang_notifications_total", "notification send attempts",
                        ["channel", "result"])
SEND_SECONDS = Histogram("shouwang_notification_send_seconds",
                         "time for one send through the notifier", ["channel"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
BAD_MESSAGES = Counter("shouwang_alerting_bad_messages_total",
                       "detections that could not be decoded and were skipped")

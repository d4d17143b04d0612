"""Notifiers: how a message leaves the system. Only ``apprise_notifier`` knows apprise."""

from alerting.notifiers.apprise_notifier import AppriseNotifier, InvalidReceiverUrl, validate_urls
from alerting.notifiers.base import Notifier, NotifyError

__all__ = ["AppriseNotifier", "InvalidReceiverUrl", "Notifier", "NotifyError", "validate_urls"]

"""Receiver URLs are checked at startup, with names and without secrets."""

from __future__ import annotations

import pytest

from alerting.notifiers import InvalidReceiverUrl, NotifyError, validate_urls
from config.settings import Receiver


def test_valid_urls_pass() -> None:
    validate_urls([Receiver(name="station", channel="sms",
                            urls=("json://127.0.0.1:8025/sms", "form://example.com/x"))])


def test_bad_url_names_receiver_and_position_but_not_the_secret() -> None:
    receivers = [
        Receiver(name="station", channel="sms", urls=("json://127.0.0.1:8025/sms",)),
        Receiver(name="family-li", channel="sms",
                 urls=("json://127.0.0.1:8025/ok", "jsn://user:hunter2@gateway.example/send")),
    ]
    with pytest.raises(InvalidReceiverUrl) as caught:
        validate_urls(receivers)
    message = str(caught.value)
    assert "alerting.receivers[1] (family-li) urls[1]" in message
    assert "jsn://gateway.example" in message
    assert "hunter2" not in message
    assert "station" not in message


def test_notify_error_says_whether_to_retry() -> None:
    assert NotifyError("HTTP 500", retryable=True).retryable
    assert not NotifyError("bad URL", False).retryable

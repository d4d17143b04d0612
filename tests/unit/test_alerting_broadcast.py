"""The loudspeakers' message (priority, zone) and its audio description, and the text each
channel gets from the composer. Rendering and storing the audio clip needs the database:
tests/integration/test_broadcast_audio.py."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import pytest

from alerting.broadcast import broadcast_message, spoken_part, with_audio
from alerting.messages import MessageComposer
from alerting.speech import find_speech
from config.settings import AlertingSettings, BroadcastSettings, Receiver
from shouwang.models import Alert, AlertStatus, DetectionKind, Location, Severity, Site

SITE = Site(id="sunshine", name="阳光小区")


def _alert(**changes: Any) -> Alert:  # Any: Alert fields to replace
    alert = Alert(id=7, site="sunshine", device_id="gas-502", hazard="gas",
                  kind=DetectionKind.HAZARD, severity=Severity.RED, status=AlertStatus.OPEN,
                  opened_at=1764120000.0, last_value=32.0,
                  location=Location(building="3", unit="2", floor="5", room="502"))
    return dataclasses.replace(alert, **changes)


def _decoded(alerts: list[Alert], **kwargs: Any) -> dict[str, Any]:  # Any: JSON
    message = broadcast_message(alerts, "text", "zh",
                                site_wide_hazards=kwargs.get("site_wide", ("flood",)))
    decoded: dict[str, Any] = json.loads(message.encode())
    return decoded


@pytest.mark.parametrize(("severity", "priority", "name"), [
    (Severity.RED, 4, "emergency"), (Severity.ORANGE, 3, "urgent"),
    (Severity.YELLOW, 2, "warning"), (Severity.BLUE, 1, "notice")])
def test_priority_follows_the_colour(severity: Severity, priority: int, name: str) -> None:
    message = _decoded([_alert(severity=severity)])
    assert (message["priority"], message["priority_name"]) == (priority, name)


def test_a_drill_is_the_lowest_priority_and_a_mix_is_real() -> None:
    assert _decoded([_alert(drill=True)])["priority"] == 0
    mixed = _decoded([_alert(drill=True), _alert(id=8, severity=Severity.ORANGE)])
    assert (mixed["drill"], mixed["priority"], mixed["alert_ids"]) == (False, 4, [7, 8])


def test_zone_is_the_building_or_the_whole_site() -> None:
    def zone(alerts: list[Alert]) -> tuple[str, str | None]:
        found = _decoded(alerts)["zone"]
        return found["scope"], found["building"]
    assert zone([_alert()]) == ("building", "3")
    assert zone([_alert(), _alert(id=8)]) == ("building", "3")
    assert zone([_alert(), _alert(id=8, location=Location(building="5"))]) == ("site", None)
    assert zone([_alert(location=Location())]) == ("site", None)  # no building known
    assert zone([_alert(hazard="flood")]) == ("site", None)  # concerns everyone


def test_audio_is_added_to_the_message_and_plain_bodies_pass_through() -> None:
    body = broadcast_message([_alert()], "紧急通知", "zh", site_wide_hazards=()).encode()
    assert spoken_part(body) == ("紧急通知", "zh")
    assert spoken_part("紧急通知：阳光小区") is None  # an older row, plain text
    added = json.loads(with_audio(body, {"file": "/x.wav", "duration_s": 1.5}))
    assert added["audio"] == {"file": "/x.wav", "duration_s": 1.5}
    assert added["text"] == "紧急通知"


def test_each_channel_gets_its_own_form() -> None:
    composer = MessageComposer(AlertingSettings(), sites={"sunshine": SITE}, devices={})

    def receiver(channel: str) -> Receiver:
        return Receiver(name=channel, channel=channel,  # type: ignore[arg-type]  # literal
                        urls=("json://127.0.0.1:1/x",))
    alert = _alert()
    sms = composer.body(alert, receiver("sms"), 0.0)
    assert sms == "【守望】阳光小区3号楼2单元502 燃气泄漏 32%LEL 请立即关阀开窗勿动电器"
    assert len(sms) <= 70
    email = composer.body(alert, receiver("email"), 0.0)
    assert email.startswith("【红色预警】阳光小区 燃气泄漏\n") and len(email) > 70
    spoken = json.loads(composer.body(alert, receiver("broadcast"), 0.0))
    assert spoken["text"].startswith("紧急通知：阳光小区3号楼2单元5层502室发生燃气泄漏")
    reminder = composer.body(alert, receiver("sms"), 0.0, reminder=True)
    assert reminder.startswith("【提醒·未确认】【守望】")
    summary = json.loads(composer.summary([alert, _alert(id=8)], receiver("broadcast")))
    assert summary["alert_ids"] == [7, 8] and "同时出现2条告警" in summary["text"]


def test_no_engine_means_none_said_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="alerting.speech"):
        assert find_speech(BroadcastSettings(tts_command="no-such-tts-engine")) is None
        assert find_speech(BroadcastSettings(tts_command="")) is None
    assert len(caplog.records) == 2  # once per lookup; the service looks once, at start

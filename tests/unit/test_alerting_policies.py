"""Pure logic of the alerting policies: levels, lifecycle, links, schedules, recipients."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from alerting.ack_links import AckLinks, BadLink
from alerting.escalation import schedule
from alerting.levels import LEVELS
from alerting.models import Language
from alerting.recipients import RecipientResolver, on_duty
from alerting.storm import summary_text
from alerting.templates import SMS_LIMIT
from config.settings import (
    AlertingSettings,
    EscalationPolicy,
    EscalationStep,
    OnCallShift,
    Receiver,
    Recipient,
    RecipientGroup,
)
from shouwang.lifecycle import TRANSITIONS, IllegalTransition, check_transition
from shouwang.models import Alert, AlertStatus, DetectionKind, Location, Severity

NOW = 1_764_124_800.0  # Thursday 2025-11-26 10:40 in Beijing
SECRET = b"0123456789abcdef-secret"


def alert(*, device: str = "gas-1", building: str = "3", drill: bool = False,
          severity: Severity = Severity.ORANGE, hazard: str = "gas") -> Alert:
    return Alert(id=7, site="s1", device_id=device, hazard=hazard, kind=DetectionKind.HAZARD,
                 severity=severity, status=AlertStatus.OPEN, opened_at=NOW,
                 location=Location(building=building), drill=drill)


def test_four_colours_map_to_cap_severity_in_order() -> None:
    order = ["Minor", "Moderate", "Severe", "Extreme"]
    assert [LEVELS[s].cap_severity for s in sorted(Severity)] == order
    assert [LEVELS[s].colour_zh for s in sorted(Severity)] == ["蓝", "黄", "橙", "红"]
    assert LEVELS[Severity.RED].cap_urgency == "Immediate"


def test_lifecycle_table_covers_every_status_and_ends_in_terminal_states() -> None:
    assert set(TRANSITIONS) == set(AlertStatus)
    assert TRANSITIONS[AlertStatus.RESOLVED] == TRANSITIONS[AlertStatus.EXPIRED] == frozenset()
    check_transition(AlertStatus.OPEN, AlertStatus.ESCALATED)
    check_transition(AlertStatus.ESCALATED, AlertStatus.ESCALATED)  # the next step
    check_transition(AlertStatus.ESCALATED, AlertStatus.SUPPRESSED)  # inhibited later
    for current, wanted in [(AlertStatus.ACKNOWLEDGED, AlertStatus.OPEN),
                            (AlertStatus.ACKNOWLEDGED, AlertStatus.ESCALATED),
                            (AlertStatus.RESOLVED, AlertStatus.ACKNOWLEDGED),
                            (AlertStatus.EXPIRED, AlertStatus.OPEN)]:
        with pytest.raises(IllegalTransition):
            check_transition(current, wanted)


def test_an_ack_link_names_its_alert_and_receiver_and_expires() -> None:
    links = AckLinks(SECRET, "https://sw.example/", ttl_s=600)
    token = links.token(42, "station-zhang", NOW)
    assert links.url(42, "station-zhang", NOW) == f"https://sw.example/ack/{token}"
    assert links.verify(token, ["duty-wang", "station-zhang"], NOW + 599) == (42,
                                                                              "station-zhang")
    with pytest.raises(BadLink, match="expired"):
        links.verify(token, ["station-zhang"], NOW + 601)
    with pytest.raises(BadLink, match="not valid"):  # not a receiver of this alert
        links.verify(token, ["duty-wang"], NOW)
    alert_id, expires, code, sig = token.split(".")
    for forged in (f"2b.{expires}.{code}.{sig}",                         # another alert
                   f"{alert_id}.{int(expires, 16) + 86400:x}.{code}.{sig}",  # longer life
                   f"{alert_id}.{expires}.{code}.{sig[:-1]}A" if sig[-1] != "A"
                   else f"{alert_id}.{expires}.{code}.{sig[:-1]}B"):
        with pytest.raises(BadLink):
            links.verify(forged, ["station-zhang"], NOW)
    other = AckLinks(b"another-secret-0123456", "https://sw.example", ttl_s=600)
    with pytest.raises(BadLink):
        other.verify(token, ["station-zhang"], NOW)
    with pytest.raises(ValueError, match="16 bytes"):
        AckLinks(b"short", "https://sw.example", ttl_s=600)


@given(st.text(max_size=40))
def test_any_garbage_token_is_refused_not_crashed(token: str) -> None:
    links = AckLinks(SECRET, "https://sw.example", ttl_s=600)
    with pytest.raises(BadLink):
        links.verify(token, ["station-zhang"], NOW)


def test_schedule_lists_steps_then_reminders() -> None:
    policy = EscalationPolicy(name="p", remind_every_s=300, max_reminders=2, steps=(
        EscalationStep(groups=("station",)),
        EscalationStep(groups=("public",), min_severity="red"),
        EscalationStep(after_s=60, groups=("duty",))))
    assert [(s.index, s.outbox_step, s.after_s, s.reminder) for s in schedule(policy)] == [
        (0, 0, 0.0, False), (1, 1, 0.0, False), (2, 2, 60.0, False),
        (3, 101, 360.0, True), (4, 102, 660.0, True)]
    with pytest.raises(ValidationError, match="order of after_s"):
        EscalationPolicy(name="p", steps=(EscalationStep(after_s=60, groups=("a",)),
                                          EscalationStep(groups=("b",))))


def test_night_shift_spans_midnight_on_its_days() -> None:
    weekdays_night = OnCallShift(days=(0, 1, 2, 3, 4), start="20:00", end="08:00")
    friday_23h = dt.datetime(2026, 11, 27, 23, 0)
    saturday_7h = dt.datetime(2026, 11, 28, 7, 0)   # Friday's shift, still on
    sunday_7h = dt.datetime(2026, 11, 29, 7, 0)     # Saturday had no shift
    assert [on_duty([weekdays_night], t) for t in (friday_23h, saturday_7h, sunday_7h)] == [
        True, True, False]
    assert on_duty([], sunday_7h)


def _settings() -> AlertingSettings:
    def sms(name: str) -> Receiver:
        return Receiver(name=name, channel="sms", urls=(f"json://x/{name}",))
    return AlertingSettings(
        receivers=(sms("zhang"), sms("zhang-backup"), sms("night"), sms("li-son"),
                   sms("mgr-3")),
        groups=(RecipientGroup(name="station", drill=True, recipients=(
                    Recipient(name="zhang", receivers=("zhang", "zhang-backup"),
                              fallback_after_s=20),
                    Recipient(name="night", receivers=("night",),
                              on_call=(OnCallShift(start="20:00", end="08:00"),)))),
                RecipientGroup(name="family", recipients=(
                    Recipient(name="li-son", receivers=("li-son",), devices=("band-li",)),)),
                RecipientGroup(name="managers", recipients=(
                    Recipient(name="mgr-3", receivers=("mgr-3",), buildings=("3",)),))))


def test_recipients_by_scope_duty_and_drill() -> None:
    resolver = RecipientResolver(_settings())
    everyone = ("station", "family", "managers")
    names = [r.name for r in resolver.receivers(alert(), everyone, NOW)]  # 10:40 local
    assert names == ["zhang", "mgr-3"]  # no night shift by day; not li's device
    at_night = NOW + 12 * 3600
    assert [r.name for r in resolver.receivers(alert(device="band-li", building="5"),
                                               everyone, at_night)] == [
        "zhang", "night", "li-son"]
    assert [r.name for r in resolver.receivers(alert(drill=True), everyone, NOW)] == ["zhang"]
    assert resolver.fallbacks["zhang"].receiver == "zhang-backup"
    assert resolver.fallbacks["zhang"].after_s == 20


def test_config_names_must_exist() -> None:
    with pytest.raises(ValidationError, match="unknown receivers"):
        AlertingSettings(groups=(RecipientGroup(name="g", recipients=(
            Recipient(name="x", receivers=("nobody",)),)),))
    with pytest.raises(ValidationError, match="unknown groups"):
        AlertingSettings(policies=(EscalationPolicy(name="p", steps=(
            EscalationStep(groups=("ghosts",)),)),))


def test_storm_summary_in_english_counts_by_hazard() -> None:
    alerts = [alert(hazard="offline")] * 3 + [alert(hazard="smoke", drill=True)]
    assert summary_text(alerts, "Sunshine", "en") == (
        "[DRILL] [Shouwang] Sunshine: 4 alerts at once: 3 x Device offline, 1 x Smoke alarm. "
        "See the console for details.")


@given(hazards=st.lists(st.sampled_from(
    ["offline", "gas", "smoke", "stuck", "flood", "battery_low", "seq_gap", "clock_skew",
     "fire", "gas_forecast", "lel_drift", "pattern_anomaly", "sos", "fall"]), min_size=11,
    max_size=300), language=st.sampled_from(["zh", "en"]), drill=st.booleans())
def test_storm_summary_fits_one_sms_segment(hazards: list[str], language: Language,
                                            drill: bool) -> None:
    alerts = [alert(hazard=h, drill=drill) for h in hazards]
    text = summary_text(alerts, "阳光小区", language)
    assert len(text) <= SMS_LIMIT[language], text
    assert str(len(alerts)) in text

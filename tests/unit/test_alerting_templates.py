"""Alert wording: the SMS fits one segment, drills say so, every hazard reads in both languages."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerting.models import Language
from alerting.templates import HAZARD_WORDING, SMS_LIMIT, body_for, render, render_title
from shouwang.catalog import DeviceType
from shouwang.models import Alert, AlertStatus, DetectionKind, Device, Location, Severity, Site

HAZARDS = ("gas", "co", "smoke", "heat", "flood", "electrical_leak", "overheat",
           "heart_rate_high", "heart_rate_low", "sos", "fall", "offline")

LANGUAGES: tuple[Language, ...] = ("zh", "en")
SITE = Site(id="sunshine", name="阳光小区")
PLACE = Location(building="3", unit="2", floor="5", room="502")


def _alert(**changes: Any) -> Alert:  # Any: Alert fields to replace
    alert = Alert(id=7, site="sunshine", device_id="gas-502", hazard="gas",
                  kind=DetectionKind.HAZARD, severity=Severity.RED, status=AlertStatus.OPEN,
                  opened_at=1764120000.0, location=PLACE, last_value=32.0)
    return dataclasses.replace(alert, **changes)


def test_gas_sms_reads_like_the_brief() -> None:
    text = render(_alert(), site=SITE)
    assert text.sms == "【守望】阳光小区3号楼2单元502 燃气泄漏 32%LEL 请立即关阀开窗勿动电器"
    assert text.title == "【红色预警】阳光小区 燃气泄漏"
    assert "3号楼2单元5层502室" in text.broadcast
    assert "请立即关闭燃气阀门" in text.broadcast


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_hazard_has_wording(language: Language) -> None:
    assert set(HAZARDS) <= set(HAZARD_WORDING[language])


@pytest.mark.parametrize("hazard", HAZARDS)
@pytest.mark.parametrize("drill", [False, True])
def test_chinese_sms_fits_one_segment_and_names_the_hazard(hazard: str, drill: bool) -> None:
    wording = HAZARD_WORDING["zh"][hazard]
    text = render(_alert(hazard=hazard, drill=drill, last_value=158.0), site=SITE)
    assert len(text.sms) <= 70
    assert wording.name in text.sms
    assert wording.advice in text.sms
    assert text.sms.startswith("【演练】") == drill
    assert text.title.startswith("【演练】") == drill
    assert text.broadcast.startswith("【演练】") == drill


@given(site_name=st.text(alphabet="北京市朝阳区幸福家园小区东西南北ABC", min_size=1, max_size=40),
       building=st.text(alphabet="0123456789号楼东区", max_size=20),
       room=st.text(alphabet="0123456789", max_size=8),
       hazard=st.sampled_from(HAZARDS), drill=st.booleans(),
       value=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_sms_never_exceeds_a_segment_and_keeps_the_advice(
        site_name: str, building: str, room: str, hazard: str, drill: bool,
        value: float) -> None:
    alert = _alert(hazard=hazard, drill=drill, last_value=value,
                   location=Location(building=building, unit="2", room=room))
    for language in LANGUAGES:
        sms = render(alert, site=Site(id="s", name=site_name), language=language).sms
        assert len(sms) <= SMS_LIMIT[language]
        assert HAZARD_WORDING[language][hazard].advice in sms


def test_long_place_keeps_the_room_number() -> None:
    alert = _alert(hazard="heart_rate_low", last_value=33.0,
                   location=Location(building="幸福家园小区东区十七号楼北侧配楼", unit="二单元",
                                     room="1502"))
    sms = render(alert, site=Site(id="s", name="北京市朝阳区幸福家园小区东区")).sms
    assert len(sms) <= 70
    assert "二单元1502 心率过低 33次/分" in sms


def test_english_texts() -> None:
    text = render(_alert(drill=True), site=Site(id="s", name="Sunshine Garden"), language="en")
    assert text.title == "[DRILL] Red warning: Gas leak at Sunshine Garden"
    assert text.sms.startswith("[DRILL] [Shouwang] Sunshine Garden, Bldg 3, Unit 2")
    assert "Gas leak 32%LEL" in text.sms
    assert len(text.sms) <= 160
    assert text.sms.isascii()  # GSM-7, or the segment shrinks to 70 characters
    assert text.broadcast.startswith("[DRILL] Attention please. Gas leak at Sunshine Garden")


def test_value_less_hazards_and_unknown_hazards() -> None:
    sos = render(_alert(hazard="sos", last_value=1.0), site=SITE)
    assert sos.sms == "【守望】阳光小区3号楼2单元502 紧急呼救 请立即回电或上门查看"
    odd = render(_alert(hazard="rate_of_rise", severity=Severity.YELLOW), site=SITE)
    assert odd.title == "【黄色预警】阳光小区 设备告警"
    assert "请尽快到场查看" in odd.sms


def test_place_falls_back_to_device_name_then_id() -> None:
    bare = _alert(location=Location())
    device = Device(id="gas-502", type=DeviceType.GAS, site="sunshine", name="502厨房燃气")
    assert "阳光小区502厨房燃气 燃气泄漏" in render(bare, site=SITE, device=device).sms
    assert "阳光小区gas-502 燃气泄漏" in render(bare, site=SITE).sms
    assert "sunshine" in render(bare).title  # no site known: its id


def test_title_is_rebuilt_from_the_row_alone() -> None:
    alert = _alert(severity=Severity.ORANGE, drill=True)
    assert render(alert, site=SITE).title == render_title(
        hazard="gas", severity=Severity.ORANGE, site_name="阳光小区", drill=True)


def test_channel_bodies() -> None:
    text = render(_alert(), site=SITE)
    assert body_for("broadcast", text) == text.broadcast
    assert body_for("sms", text) == text.sms
    assert body_for("email", text) == body_for("wecom", text) == body_for("webhook", text) == (
        text.long)


@pytest.mark.parametrize("language", LANGUAGES)
def test_long_form_has_every_detail(language: Language) -> None:
    device = Device(id="gas-502", type=DeviceType.GAS, site="sunshine", name="厨房燃气探测器")
    text = render(_alert(), site=SITE, device=device, language=language)
    lines = text.long.split("\n")
    assert lines[0] == text.title
    assert len(text.long) > SMS_LIMIT[language] >= len(text.sms)
    advice = HAZARD_WORDING[language]["gas"].spoken_advice
    assert any(line.endswith(advice) for line in lines)
    assert any("gas-502" in line and "厨房燃气探测器" in line for line in lines)
    # Beijing time, whatever the machine's zone: 1764120000 is 09:20 on 26 Nov 2025 there.
    assert any("2025-11-26 09:20:00" in line for line in lines)
    assert lines[-1].endswith("7")  # the alert number, to quote on the phone


def test_learned_anomalies_are_named_after_their_metric() -> None:
    anomaly = _alert(hazard="lel_anomaly", kind=DetectionKind.ANOMALY,
                     severity=Severity.BLUE)
    assert "可燃气体浓度读数异常" in render(anomaly, site=SITE).sms
    assert "Unusual combustible gas readings" in render(anomaly, language="en").title


def _hazards_the_defaults_raise() -> set[str]:
    """Every hazard name the default detectors can put on an alert."""
    from config.settings import Settings
    from detectors.health import _SEVERITY as HEALTH_SEVERITY

    detectors = Settings().detectors
    names = {rule.hazard for rule in detectors.thresholds}
    names |= {rule.hazard for rule in detectors.rate_of_rise}
    names |= {rule.result_hazard for rule in detectors.correlations}
    names |= {f"{rule.hazard}_forecast" for rule in detectors.thresholds
              if rule.metric in detectors.forecast.metrics}
    names |= {f"{rule.metric}_drift" for rule in detectors.drift.rules}
    names |= {f"{metric}_anomaly" for metric in ("lel", "co", "level", "heart_rate")}
    names |= set(HEALTH_SEVERITY) | {"offline", "flooding", "pattern_anomaly", "sos", "fall",
                                     "siren", "tamper"}
    return names


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_hazard_the_defaults_raise_has_its_own_words(language: Language) -> None:
    # A confirmed fire must not reach the loudspeakers as "device alert".
    generic = render(_alert(hazard="no_such_hazard"), site=SITE, language=language)
    for hazard in sorted(_hazards_the_defaults_raise()):
        text = render(_alert(hazard=hazard), site=SITE, language=language)
        assert text.sms != generic.sms, hazard
        assert len(text.sms) <= SMS_LIMIT[language], (hazard, text.sms)

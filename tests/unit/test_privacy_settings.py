"""Residents and privacy settings are checked at load; the config record is secret-free;
the console's health policy hides values from roles that do not need them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from config.settings import ConfigError, load
from console.privacy import RESTRICTED_TEXT, HealthPolicy
from console.users import Role, User
from shouwang.audit import config_changes, flat_config
from shouwang.models import Alert, AlertStatus, DetectionKind, Location, Severity

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "community.example.yaml"


def _config(**overrides: Any) -> dict[str, Any]:  # Any: raw config values
    data: dict[str, Any] = {  # Any: raw config values
        "sites": [{"id": "s1", "name": "一"}, {"id": "s2", "name": "二"}],
        "devices": [{"id": "w1", "type": "wearable", "site": "s1"},
                    {"id": "w2", "type": "wearable", "site": "s2"},
                    {"id": "g1", "type": "gas", "site": "s1"}],
        "alerting": {"receivers": [{"name": "sms", "channel": "sms", "urls": ["json://x/"]}],
                     "groups": [{"name": "family", "recipients": [
                         {"name": "daughter", "receivers": ["sms"]}]}]},
        "residents": [{"id": "r1", "name": "甲", "site": "s1", "devices": ["w1"],
                       "family_contacts": ["daughter"]}],
    }
    data.update(overrides)
    return data


def test_a_valid_resident_loads() -> None:
    settings = load(None, **_config())
    assert settings.residents[0].devices == ("w1",)
    assert settings.privacy.health_retention_days == 30
    assert "heart_rate" in settings.privacy.health_metrics
    assert set(settings.privacy.health_roles) == {"admin", "duty_officer", "care"}


@pytest.mark.parametrize(("resident", "reason"), [
    ({"devices": ["g1"]}, "not a wearable"),
    ({"devices": ["w2"]}, "not a wearable of site 's1'"),
    ({"devices": ["nope"]}, "not a wearable"),
    ({"site": "s9"}, "unknown site"),
    ({"family_contacts": ["stranger"]}, "unknown family contacts"),
    ({"devices": []}, "residents.0.devices"),
])
def test_bad_residents_fail_at_load_naming_the_key(resident: dict[str, Any],
                                                    reason: str) -> None:
    base = {"id": "r1", "name": "甲", "site": "s1", "devices": ["w1"]}
    with pytest.raises(ConfigError, match=reason):
        load(None, **_config(residents=[{**base, **resident}]))


def test_one_wearable_one_wearer_and_unique_ids() -> None:
    two = [{"id": "r1", "name": "甲", "site": "s1", "devices": ["w1"]},
           {"id": "r2", "name": "乙", "site": "s1", "devices": ["w1"]}]
    with pytest.raises(ConfigError, match="worn by 'r1' already"):
        load(None, **_config(residents=two))
    same = [{"id": "r1", "name": "甲", "site": "s1", "devices": ["w1"]},
            {"id": "r1", "name": "乙", "site": "s2", "devices": ["w2"]}]
    with pytest.raises(ConfigError, match="duplicate resident id"):
        load(None, **_config(residents=same))


@pytest.mark.parametrize("privacy", [{"health_retention_days": 0},
                                     {"health_metrics": ["heartbeat"]},
                                     {"health_roles": ["janitor"]}])
def test_bad_privacy_settings_fail(privacy: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="privacy"):
        load(None, **_config(privacy=privacy))


def test_example_config_has_residents_and_no_real_looking_numbers() -> None:
    settings = load(EXAMPLE)
    assert [r.id for r in settings.residents] == ["r-1-1-302", "r-2-1-201"]
    assert all(r.name.endswith("(example)") for r in settings.residents)
    assert settings.privacy.health_retention_days == 30


def test_config_record_hides_secrets_and_personal_names() -> None:
    settings = load(None, **_config(
        mqtt={"password": "pw-123456789"},
        database={"dsn": "postgresql://u:dbpw999@db:5432/x"},
        alerting={"receivers": [{"name": "sms", "channel": "sms",
                                 "urls": ["https://u:pw777@sms.example/send?token=t0k3n"]}],
                  "groups": [{"name": "family", "recipients": [
                      {"name": "daughter", "receivers": ["sms"]}]}]}))
    flat = flat_config(settings)
    text = repr(flat)
    for secret in ("pw-123456789", "dbpw999", "pw777", "t0k3n", "甲"):
        assert secret not in text, secret
    assert flat["alerting.receivers[sms].urls"] == ["https://sms.example/…"]
    assert flat["residents[r1].devices"] == ["w1"]
    assert "residents[r1].name" not in flat


def test_config_changes_lists_added_removed_and_changed_keys() -> None:
    assert config_changes({"a": 1, "gone": 2}, {"a": 3, "new": None}) == [
        {"key": "a", "old": 1, "new": 3}, {"key": "gone", "old": 2, "new": None},
        {"key": "new", "old": None, "new": None}]
    assert config_changes({"a": [1]}, {"a": [1]}) == []


def _alert(device: str, hazard: str) -> Alert:
    return Alert(id=1, site="s1", device_id=device, hazard=hazard, kind=DetectionKind.HAZARD,
                 severity=Severity.ORANGE, status=AlertStatus.OPEN, opened_at=0.0,
                 location=Location(building="1号楼", room="302"), last_value=150.0,
                 message="甲 心率 150")


@pytest.mark.parametrize(("role", "sees"), [("admin", True), ("duty_officer", True),
                                            ("care", True), ("fire_station", False),
                                            ("viewer", False)])
def test_health_policy_by_role(role: str, sees: bool) -> None:
    policy = HealthPolicy.from_settings(load(None, **_config()))
    user = User(id=1, name="u", role=Role(role), sites=("*",))
    shown = policy.alert(user, _alert("w1", "heart_rate_high"))
    assert (shown.last_value, shown.message) == ((150.0, "甲 心率 150") if sees
                                                 else (None, RESTRICTED_TEXT))
    assert shown.location.room == "302"
    assert policy.alert(user, _alert("g1", "gas")).last_value == 150.0  # not a wearable
    sos = policy.alert(user, _alert("w1", "sos"))
    assert sos.message == "甲 心率 150" and sos.last_value == (150.0 if sees else None)

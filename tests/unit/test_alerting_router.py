"""Routing: every matching route's receivers, each once, in config order."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from alerting.router import Router
from config.settings import Receiver, Route
from shouwang.models import Alert, AlertStatus, DetectionKind, Severity

RECEIVERS = (
    Receiver(name="station-sms", channel="sms", urls=("json://127.0.0.1:1/sms",)),
    Receiver(name="loudspeaker", channel="broadcast", urls=("json://127.0.0.1:1/broadcast",)),
    Receiver(name="family", channel="sms", urls=("json://127.0.0.1:1/family",)),
    Receiver(name="maintenance", channel="wecom", urls=("json://127.0.0.1:1/wecom",)),
)
ROUTES = (
    Route(site="sunshine", hazards=("gas", "smoke"), min_severity="orange",
          receivers=("station-sms", "loudspeaker")),
    Route(hazards=("fall", "sos", "gas"), receivers=("family", "station-sms")),
    Route(kinds=("health",), receivers=("maintenance",)),
)


def _alert(**changes: Any) -> Alert:  # Any: Alert fields to replace
    alert = Alert(id=1, site="sunshine", device_id="d1", hazard="gas", kind=DetectionKind.HAZARD,
                  severity=Severity.RED, status=AlertStatus.OPEN, opened_at=0.0)
    return dataclasses.replace(alert, **changes)


def _names(alert: Alert) -> list[str]:
    return [r.name for r in Router(ROUTES, RECEIVERS).receivers_for(alert)]


def test_matching_routes_are_merged_without_duplicates() -> None:
    assert _names(_alert()) == ["station-sms", "loudspeaker", "family"]


def test_severity_below_the_route_minimum_is_not_routed_there() -> None:
    assert _names(_alert(severity=Severity.YELLOW)) == ["family", "station-sms"]


def test_site_hazard_and_kind_must_all_match() -> None:
    assert _names(_alert(site="riverside")) == ["family", "station-sms"]
    assert _names(_alert(hazard="smoke")) == ["station-sms", "loudspeaker"]
    assert _names(_alert(hazard="flood")) == []
    assert _names(_alert(hazard="offline", kind=DetectionKind.HEALTH)) == ["maintenance"]


def test_unknown_receiver_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="nobody"):
        Router((Route(receivers=("nobody",)),), RECEIVERS)


def test_drills_skip_the_loudspeakers_and_receivers_that_opt_out() -> None:
    family_out = Receiver(name="family", channel="sms", urls=("json://127.0.0.1:1/family",),
                          drill=False)
    speaker_in = Receiver(name="loudspeaker", channel="broadcast",
                          urls=("json://127.0.0.1:1/broadcast",), drill=True)
    assert _names(_alert(drill=True)) == ["station-sms", "family"]
    opted = Router(ROUTES, (RECEIVERS[0], speaker_in, family_out, RECEIVERS[3]))
    assert [r.name for r in opted.receivers_for(_alert(drill=True))] == \
        ["station-sms", "loudspeaker"]
    assert [r.name for r in opted.receivers_for(_alert())] == \
        ["station-sms", "loudspeaker", "family"]

"""config/community.example.yaml: valid, complete, and faithful to the defaults it repeats."""

from __future__ import annotations

from pathlib import Path

import orjson

from config.settings import DEFAULT_THRESHOLDS, Settings, load
from shouwang.catalog import DeviceType
from shouwang.models import Severity
from simulators import SCENARIOS, Community

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "community.example.yaml"


def _settings() -> Settings:
    return load(EXAMPLE)


def test_example_loads_with_every_device_type_on_its_site() -> None:
    settings = _settings()
    types = {d.type for d in settings.devices}

    assert types == set(DeviceType)
    assert 24 <= len(settings.devices) <= 60
    assert [s.id for s in settings.sites] == ["sunshine"]
    assert len({d.building for d in settings.devices if d.type is not DeviceType.WATER}) == 3
    assert all(d.report_interval_s <= 30 for d in settings.devices)
    # Embedded defaults: no DSN, no broker host, no secrets in the committed file.
    assert settings.database.dsn is None and settings.mqtt.host is None
    assert settings.mqtt.password is None
    assert "password:" not in EXAMPLE.read_text(encoding="utf-8")


def test_repeated_thresholds_equal_the_code_defaults() -> None:
    assert _settings().detectors.thresholds == DEFAULT_THRESHOLDS


def test_routes_send_orange_to_the_station_and_red_to_the_loudspeakers() -> None:
    alerting = _settings().alerting

    def receivers(severity: Severity) -> set[str]:
        return {name for route in alerting.routes
                if route.matches(site="sunshine", hazard="gas", kind="hazard", severity=severity)
                for name in route.receivers}

    assert receivers(Severity.YELLOW) == set()
    assert receivers(Severity.ORANGE) == {"fire-station-sms", "duty-officer-sms"}
    assert receivers(Severity.RED) == {"fire-station-sms", "duty-officer-sms",
                                       "community-broadcast"}
    channels = {r.name: r.channel for r in alerting.receivers}
    assert channels["community-broadcast"] == "broadcast"
    assert channels["fire-station-sms"] == channels["duty-officer-sms"] == "sms"


def test_the_demo_gas_leak_hits_a_kitchen_one_minute_in() -> None:
    settings = _settings()
    (run,) = settings.simulator.scenarios
    device = settings.device_map()[run.device_id]

    assert run.scenario in SCENARIOS and run.start_after_s == 60
    assert device.type is DeviceType.GAS and "厨房" in device.location.room
    community = Community.from_settings(settings, epoch0=1_764_120_000.0)
    lel = [orjson.loads(m.payload)["values"]["lel"] for m in community.due(240.0)
           if m.device_id == run.device_id]
    assert max(lel) >= 50.0
    (truth,) = community.ground_truth()
    assert truth.hazard == "gas" and truth.onset_ts == 1_764_120_060.0

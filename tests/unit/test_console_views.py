"""The JSON shapes the API and the live stream send."""

from __future__ import annotations

import math

import orjson

from console.device_status import device_status
from console.models import DeviceState, DeviceStatus
from console.views import JSONResponse, alert_view, device_view, iso_utc
from shouwang.catalog import DeviceType
from shouwang.models import Alert, AlertStatus, DetectionKind, Device, Location, Severity


def _alert(**changes: object) -> Alert:
    fields: dict[str, object] = dict(
        id=3, site="s1", device_id="w1", hazard="flood", kind=DetectionKind.HAZARD,
        severity=Severity.YELLOW, status=AlertStatus.ESCALATED, opened_at=1_764_124_800.0,
        location=Location(building="地库", floor="B1"), acknowledged_at=None,
        resolved_at=1_764_124_860.5, last_value=0.34, message="水位 0.34 m", drill=True)
    fields.update(changes)
    return Alert(**fields)  # type: ignore[arg-type]


def test_alert_view() -> None:
    view = alert_view(_alert())
    assert view["severity"] == "yellow"
    assert view["severity_level"] == 2
    assert view["status"] == "escalated"
    assert view["opened_at"] == "2025-11-26T02:40:00.000Z"
    assert view["acknowledged_at"] is None
    assert view["resolved_at"] == "2025-11-26T02:41:00.500Z"
    assert view["location"]["text"] == "地库 B1层"
    assert view["drill"] is True


def test_every_severity_has_its_colour() -> None:
    colours = [alert_view(_alert(severity=s))["severity"] for s in Severity]
    assert colours == ["blue", "yellow", "orange", "red"]


def test_iso_utc_is_utc_with_z() -> None:
    assert iso_utc(0.0) == "1970-01-01T00:00:00.000Z"


def test_json_keeps_chinese_and_markup_as_is() -> None:
    body = JSONResponse({"name": "<script>x</script> 烟感", "v": math.nan}).body
    assert orjson.loads(body) == {"name": "<script>x</script> 烟感", "v": None}
    assert "烟感".encode() in body


def test_device_view() -> None:
    device = Device(id="g1", type=DeviceType.GAS, site="s1", name="燃气",
                    location=Location(building="3号楼", room="502"), report_interval_s=30.0)
    view = device_view(DeviceState(device=device, status=DeviceStatus.ONLINE,
                                   last_seen=1_764_124_800.0, battery=55.0))
    assert view == {
        "id": "g1", "type": "gas", "site": "s1", "name": "燃气",
        "location": {"building": "3号楼", "unit": "", "floor": "", "room": "502",
                     "lat": None, "lon": None, "text": "3号楼 502"},
        "status": "online", "last_seen": "2025-11-26T02:40:00.000Z", "battery": 55.0,
        "report_interval_s": 30.0,
    }


def test_device_status_boundaries() -> None:
    def status(stored: str, last_seen: float | None, now: float) -> DeviceStatus:
        return device_status(stored=stored, last_seen=last_seen, report_interval_s=10.0,
                             now=now, offline_after_intervals=3.0)

    assert status("online", 100.0, 130.0) is DeviceStatus.ONLINE   # exactly 3 intervals
    assert status("online", 100.0, 130.1) is DeviceStatus.OFFLINE
    assert status("unknown", 100.0, 101.0) is DeviceStatus.ONLINE  # seen: stored value stale
    assert status("offline", 100.0, 101.0) is DeviceStatus.OFFLINE
    assert status("offline", None, 0.0) is DeviceStatus.OFFLINE
    assert status("unknown", None, 1e9) is DeviceStatus.UNKNOWN


def test_pages_get_the_hazard_named_as_messages_name_it() -> None:
    # The pages' own tables never knew correlation results or pre-warnings.
    assert alert_view(_alert(hazard="fire"))["hazard_name"] == ["火灾", "Fire"]
    assert alert_view(_alert(hazard="gas_forecast"))["hazard_name"] == [
        "燃气泄漏趋势预警", "Gas leak warning: rising"]

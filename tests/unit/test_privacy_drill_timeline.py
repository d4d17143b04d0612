"""A drill's timeline keeps residents' health details from roles that may not see them."""

from __future__ import annotations

from console.privacy import NOTE_HIDDEN_TEXT, RESTRICTED_TEXT, HealthPolicy
from console.users import Role, User
from simulators.drill_record import TimelineEntry

POLICY = HealthPolicy(roles=frozenset({"admin", "duty_officer", "care"}),
                      metrics=frozenset({"heart_rate"}), wearables=frozenset({"wear-1"}))
ENTRIES = (
    TimelineEntry(at=1.0, kind="notification", device_id="wear-1", hazard="heart_rate_high",
                  detail="sent: 【演练】心率过高 158次/分"),
    TimelineEntry(at=2.0, kind="notification", device_id="wear-1", hazard="sos",
                  detail="sent: 【演练】紧急呼救"),
    TimelineEntry(at=3.0, kind="notification", device_id="gas-1", hazard="gas",
                  detail="sent: 【演练】燃气泄漏 32%LEL"),
    TimelineEntry(at=4.0, kind="onset", device_id="wear-1", hazard="heart_rate_high"),
)


def _user(role: Role) -> User:
    return User(id=1, name=role.value, role=role, sites=("*",))


def test_fire_station_reads_no_heart_rate_in_a_drill_timeline() -> None:
    seen = POLICY.timeline(_user(Role.FIRE_STATION), ENTRIES)
    assert [e.detail for e in seen] == [RESTRICTED_TEXT, "sent: 【演练】紧急呼救",
                                        "sent: 【演练】燃气泄漏 32%LEL", ""]
    assert [e.at for e in seen] == [1.0, 2.0, 3.0, 4.0]  # every step still shows


def test_care_staff_read_the_whole_timeline() -> None:
    assert POLICY.timeline(_user(Role.CARE), ENTRIES) == list(ENTRIES)


def test_fire_station_reads_no_staff_note_on_a_wearables_alert() -> None:
    notes = (
        TimelineEntry(at=5.0, kind="acknowledged", device_id="wear-1", hazard="sos",
                      actor="护理员小张", detail="有心脏病史，已含服硝酸甘油"),
        TimelineEntry(at=6.0, kind="silenced", device_id="wear-1", hazard="fall",
                      actor="system", detail="silence #3 by 小张 until 9: 住院中"),
        TimelineEntry(at=7.0, kind="acknowledged", device_id="gas-1", hazard="gas",
                      actor="李工", detail="已关闭总阀"),
        TimelineEntry(at=8.0, kind="resolved", device_id="wear-1", hazard="sos", actor="小张"),
    )
    seen = POLICY.timeline(_user(Role.FIRE_STATION), notes)
    assert [(e.actor, e.detail) for e in seen] == [
        ("护理员小张", NOTE_HIDDEN_TEXT), ("system", NOTE_HIDDEN_TEXT), ("李工", "已关闭总阀"),
        ("小张", "")]
    assert POLICY.timeline(_user(Role.CARE), notes) == list(notes)

"""The board's assign action, escalation step and countdown, site plans and chart buckets,
against a real PostgreSQL schema (httpx over ASGI, lifespan run).

Two sites: s1 (幸福里, with a configured plan) holds a red gas alert covered by a three-step
escalation policy; s2 (阳光, no plan) holds a smoke alert.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from psycopg import AsyncConnection
from pydantic import ValidationError

from config.settings import (
    AlertingSettings,
    DeviceConfig,
    EscalationPolicy,
    EscalationStep,
    Receiver,
    Recipient,
    RecipientGroup,
    Settings,
    SiteConfig,
    SitePlan,
    load,
)
from console import create_app
from console.context import ConsoleContext
from console.users import Role
from console.views import iso_utc
from shouwang.bus import MemoryBus
from shouwang.catalog import DeviceType
from shouwang.codec import encode_alert
from shouwang.models import AlertStatus
from shouwang.store import connect
from shouwang.store.alerts import transition
from shouwang.store.registry import sync_registry
from tests.integration.console_app import Clock, LogsIn, client_maker, open_alert
from tests.integration.console_auth import add_user

pytestmark = pytest.mark.integration

NOW = 1_764_124_800.0
OPENED = NOW - 30.0

PLAN = {
    "width": 400, "height": 300,
    "buildings": [
        {"name": "3号楼", "x": 20, "y": 20, "width": 150, "height": 200,
         "floors": [{"name": "1"}, {"name": "5", "rooms": ["501", "502"]}]},
        {"name": "地库", "label": "地下车库", "x": 200, "y": 20, "width": 180, "height": 80},
    ],
}

SETTINGS = Settings(
    sites=(SiteConfig(id="s1", name="幸福里", plan=SitePlan.model_validate(PLAN)),
           SiteConfig(id="s2", name="阳光")),
    devices=(
        DeviceConfig(id="g1", type=DeviceType.GAS, site="s1", name="3号楼燃气",
                     building="3号楼", floor="5", room="502 厨房"),
        DeviceConfig(id="k2", type=DeviceType.SMOKE, site="s2", name="厨房烟感",
                     building="9号楼"),
    ),
    alerting=AlertingSettings(
        receivers=(Receiver(name="sms", channel="sms", urls=("json://127.0.0.1:1/sms",)),
                   Receiver(name="horn", channel="broadcast",
                            urls=("json://127.0.0.1:1/horn",))),
        groups=(
            RecipientGroup(name="fire_station", recipients=(
                Recipient(name="李队长", receivers=("sms",)),)),
            RecipientGroup(name="public", recipients=(
                Recipient(name="loudspeakers", receivers=("horn",)),)),
            RecipientGroup(name="duty_officers", recipients=(
                Recipient(name="张主任", receivers=("sms",)),)),
        ),
        policies=(EscalationPolicy(
            name="fire-gas", hazards=("gas",), min_severity="orange",
            steps=(EscalationStep(groups=("fire_station",)),
                   EscalationStep(groups=("public",), min_severity="red"),
                   EscalationStep(after_s=60, groups=("duty_officers",))),
            remind_every_s=120, max_reminders=2),),
    ),
)


@dataclass
class Board(LogsIn):
    app: Any  # the Starlette app
    db: AsyncConnection[Any]
    bus: MemoryBus
    clock: Clock
    s1_alert: int
    s2_alert: int
    client: Callable[[], httpx.AsyncClient]

    @property
    def context(self) -> ConsoleContext:
        context: ConsoleContext = self.app.state.console
        return context


@pytest.fixture
async def board(pg_dsn: str, db_schema: str) -> AsyncIterator[Board]:
    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        await sync_registry(db, SETTINGS.site_map().values(), SETTINGS.device_map().values())
        s1 = await open_alert(db, "g1", "s1", "gas", at=OPENED, value=60.0)
        s2 = await open_alert(db, "k2", "s2", "smoke", at=OPENED, value=60.0)
        # As the escalator leaves it: steps 1 and 2 sent at once, step 3 due 60 s in.
        await db.execute("INSERT INTO escalations (alert_id, policy, next_step, due_at) "
                         "VALUES (%s, 'fire-gas', 2, to_timestamp(%s))", (s1, OPENED + 60))
        await add_user(db, "王值班", Role.DUTY_OFFICER, ("s1",))
        await add_user(db, "s1微站", Role.FIRE_STATION, ("s1",))
        await add_user(db, "s2微站", Role.FIRE_STATION, ("s2",))
        await add_user(db, "全局管理", Role.ADMIN, ("*",))
        await add_user(db, "只读", Role.VIEWER, ("*",))
        clock = Clock(NOW)
        async with MemoryBus() as bus:
            app = create_app(SETTINGS, pg_dsn, bus, schema=db_schema, clock=clock)
            async with client_maker(app) as client:
                yield Board(app=app, db=db, bus=bus, clock=clock, s1_alert=s1, s2_alert=s2,
                            client=client)
    finally:
        await db.close()


async def _audit(db: AsyncConnection[Any], alert_id: int) -> list[tuple[Any, ...]]:
    cur = await db.execute(
        "SELECT actor, source, action, from_status, to_status, note, extract(epoch FROM at) "
        "FROM alert_events WHERE alert_id = %s ORDER BY id", (alert_id,))
    return await cur.fetchall()


# ---- assign ------------------------------------------------------------------------------

async def test_assignees_are_users_who_may_act_on_the_site_then_group_people(
        board: Board) -> None:
    client = await board.as_user("王值班")
    response = await client.get(f"/api/alerts/{board.s1_alert}/assignees")
    assert response.status_code == 200
    assert response.json() == [
        {"name": "s1微站", "kind": "user", "detail": "fire_station"},
        {"name": "全局管理", "kind": "user", "detail": "admin"},
        {"name": "王值班", "kind": "user", "detail": "duty_officer"},
        {"name": "李队长", "kind": "recipient", "detail": "fire_station"},
        {"name": "loudspeakers", "kind": "recipient", "detail": "public"},
        {"name": "张主任", "kind": "recipient", "detail": "duty_officers"},
    ]  # not the viewer, not s2's station


async def test_assign_records_who_whom_when_and_where_and_tells_the_board(
        board: Board) -> None:
    client = await board.as_user("王值班")
    alert_id = board.s1_alert
    async with board.bus.consumer(["alert-updates"], "watcher", from_latest=True) as watcher:
        response = await client.post(f"/api/alerts/{alert_id}/assign",
                                     json={"assignee": "s1微站", "note": "请带灭火器上5楼"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "open"  # an attribute, not a state
        assert body["assignment"] == {"assignee": "s1微站", "assigned_by": "王值班",
                                      "at": iso_utc(NOW), "note": "请带灭火器上5楼",
                                      "source": "console 127.0.0.1"}
        published = await watcher.batch(timeout_s=1.0)
        assert [m.key for m in published] == [str(alert_id)]

    audit = await _audit(board.db, alert_id)
    assert audit[-1] == ("王值班", "console 127.0.0.1", "assigned", "open", "open",
                         "→ s1微站: 请带灭火器上5楼", NOW)

    # Re-assigning keeps both rows; the newest is current, on the list and in the detail.
    board.clock.now = NOW + 5
    again = await client.post(f"/api/alerts/{alert_id}/assign", json={"assignee": "李队长"})
    assert again.status_code == 200
    listed = (await client.get("/api/alerts", params={"status": "live"})).json()
    mine = next(a for a in listed if a["id"] == alert_id)
    assert mine["assignment"]["assignee"] == "李队长"
    assert mine["assignment"]["at"] == iso_utc(NOW + 5)
    detail = (await client.get(f"/api/alerts/{alert_id}")).json()
    assert [(e["action"], e["actor"], e["note"]) for e in detail["events"]] == [
        ("opened", "system", "gas"),
        ("assigned", "王值班", "→ s1微站: 请带灭火器上5楼"),
        ("assigned", "王值班", "→ 李队长"),
    ]
    cur = await board.db.execute("SELECT assignee, assigned_by FROM alert_assignments "
                                 "WHERE alert_id = %s ORDER BY id", (alert_id,))
    assert await cur.fetchall() == [("s1微站", "王值班"), ("李队长", "王值班")]


async def test_viewer_cannot_assign(board: Board) -> None:
    viewer = await board.as_user("只读")
    response = await viewer.post(f"/api/alerts/{board.s1_alert}/assign",
                                 json={"assignee": "王值班"})
    assert response.status_code == 403
    assert response.json() == {"error": "role viewer may not assign"}
    cur = await board.db.execute("SELECT count(*) FROM alert_assignments")
    assert await cur.fetchone() == (0,)
    assert [row[2] for row in await _audit(board.db, board.s1_alert)] == ["opened"]


async def test_another_sites_alert_is_404_for_assign_and_assignees(board: Board) -> None:
    station = await board.as_user("s2微站")
    for method, path, body in (
            ("POST", f"/api/alerts/{board.s1_alert}/assign", {"assignee": "s2微站"}),
            ("GET", f"/api/alerts/{board.s1_alert}/assignees", None),
            ("POST", "/api/alerts/987654/assign", {"assignee": "s2微站"})):
        response = await station.request(method, path, json=body)
        assert response.status_code == 404, path
        assert "no alert" in response.json()["error"]
    # Its own site's alert it may assign, to itself.
    own = await station.post(f"/api/alerts/{board.s2_alert}/assign",
                             json={"assignee": "s2微站"})
    assert own.status_code == 200
    assert [row[2] for row in await _audit(board.db, board.s1_alert)] == ["opened"]


@pytest.mark.parametrize(("body", "wanted"), [
    ({"assignee": "s2微站"}, "neither a user"),        # cannot act on s1
    ({"assignee": "只读"}, "neither a user"),           # a viewer cannot act
    ({"assignee": "somebody"}, "neither a user"),
    ({"assignee": ""}, "assignee"),
    ({}, "assignee"),
    ({"assignee": "王值班", "role": "admin"}, "role"),
    ({"assignee": "王值班", "note": "x" * 2001}, "note"),
])
async def test_bad_assignee_or_body_is_422(board: Board, body: dict[str, Any],
                                           wanted: str) -> None:
    client = await board.as_user("王值班")
    response = await client.post(f"/api/alerts/{board.s1_alert}/assign", json=body)
    assert response.status_code == 422
    assert wanted in response.json()["error"]
    assert [row[2] for row in await _audit(board.db, board.s1_alert)] == ["opened"]


async def test_assign_needs_the_csrf_token_and_a_live_alert(board: Board) -> None:
    client = await board.as_user("王值班")
    forged = await client.post(f"/api/alerts/{board.s1_alert}/assign",
                               json={"assignee": "王值班"}, headers={"X-CSRF-Token": "nope"})
    assert forged.status_code == 403
    assert (await client.post(f"/api/alerts/{board.s1_alert}/resolve")).status_code == 200
    ended = await client.post(f"/api/alerts/{board.s1_alert}/assign",
                              json={"assignee": "王值班"})
    assert ended.status_code == 409
    assert ended.json() == {"error": "an alert that is resolved cannot be assigned"}


# ---- escalation step and countdown ---------------------------------------------------------

async def test_alert_shows_its_escalation_step_and_next_due_time(board: Board) -> None:
    client = await board.as_user("王值班")
    detail = (await client.get(f"/api/alerts/{board.s1_alert}")).json()
    assert detail["escalation"] == {
        "policy": "fire-gas", "step": 2, "steps": 3, "groups": ["public"],
        "next": {"number": 3, "of": 3, "reminder": False, "groups": ["duty_officers"],
                 "due_at": iso_utc(OPENED + 60)},
    }
    # No policy covers smoke here: nothing to count down.
    admin = await board.as_user("全局管理")
    other = (await admin.get(f"/api/alerts/{board.s2_alert}")).json()
    assert other["escalation"] is None

    # Acknowledged: the countdown stops; the step reached stays.
    acked = (await client.post(f"/api/alerts/{board.s1_alert}/ack")).json()
    assert acked["escalation"]["step"] == 2
    assert acked["escalation"]["next"] is None


async def test_a_fired_step_reaches_live_viewers_with_the_next_countdown(
        board: Board) -> None:
    feed = board.context.feed
    alert_id = board.s1_alert
    with feed.subscribe() as viewer:
        # What the escalator does when step 3 is due: escalate, schedule reminder 1.
        await board.db.execute("UPDATE escalations SET next_step = 3, due_at = "
                               "to_timestamp(%s) WHERE alert_id = %s", (OPENED + 180, alert_id))
        board.clock.now = OPENED + 60
        alert = await transition(board.db, alert_id, AlertStatus.ESCALATED, actor="system",
                                 source="escalation", action="escalated",
                                 note="step 2: duty_officers", now=OPENED + 60)
        await board.bus.publish("alert-updates", [(str(alert_id), encode_alert(alert))])
        async with asyncio.timeout(5):
            got = await viewer.get()
        assert got is not None and got.status is AlertStatus.ESCALATED
        notes = feed.notes(got)
        assert notes is not None and notes.escalation is not None
        assert (notes.escalation.step, notes.escalation.groups) == (3, ("duty_officers",))
        upcoming = notes.escalation.next
        assert upcoming is not None
        assert (upcoming.reminder, upcoming.number, upcoming.of, upcoming.due_at) == (
            True, 1, 2, OPENED + 180)
        assert upcoming.groups == ("fire_station", "public", "duty_officers")

        # Someone acknowledges in another console: the countdown stops for every viewer.
        client = await board.as_user("王值班")
        assert (await client.post(f"/api/alerts/{alert_id}/ack")).status_code == 200
        async with asyncio.timeout(5):
            got = await viewer.get()
        assert got is not None and got.status is AlertStatus.ACKNOWLEDGED
        notes = feed.notes(got)
        assert notes is not None and notes.escalation is not None
        assert notes.escalation.next is None


async def test_steps_reached_without_a_schedule_row_come_from_the_clock(
        board: Board) -> None:
    await board.db.execute("DELETE FROM escalations")
    client = await board.as_user("王值班")
    board.clock.now = OPENED + 10
    early = (await client.get(f"/api/alerts/{board.s1_alert}")).json()["escalation"]
    assert (early["step"], early["next"]) == (2, None)
    board.clock.now = OPENED + 61
    later = (await client.get(f"/api/alerts/{board.s1_alert}")).json()["escalation"]
    assert (later["step"], later["groups"]) == (3, ["duty_officers"])


# ---- site plan -------------------------------------------------------------------------------

async def test_sites_carry_their_configured_plan(board: Board) -> None:
    admin = await board.as_user("全局管理")
    sites = {s["id"]: s for s in (await admin.get("/api/sites")).json()}
    assert sites["s2"]["plan"] is None  # the board draws one from the devices
    plan = sites["s1"]["plan"]
    assert (plan["width"], plan["height"]) == (400, 300)
    assert plan["buildings"][0] == {
        "name": "3号楼", "label": "3号楼", "x": 20, "y": 20, "width": 150, "height": 200,
        "floors": [{"name": "1", "rooms": []}, {"name": "5", "rooms": ["501", "502"]}]}
    assert plan["buildings"][1]["label"] == "地下车库"
    station = await board.as_user("s2微站")
    assert [s["id"] for s in (await station.get("/api/sites")).json()] == ["s2"]


def _plan(**changes: Any) -> dict[str, Any]:  # Any: YAML-shaped
    plan: dict[str, Any] = {"width": 400, "height": 300, "buildings": [
        {"name": "A", "x": 10, "y": 10, "width": 100, "height": 100},
        {"name": "B", "x": 200, "y": 10, "width": 100, "height": 100}]}
    plan.update(changes)
    return plan


@pytest.mark.parametrize(("plan", "wanted"), [
    (_plan(buildings=[]), "at least 1"),
    (_plan(width=150), "reaches outside the 150x300 canvas"),
    (_plan(buildings=[{"name": "A", "x": 10, "y": 10, "width": 100, "height": 100},
                      {"name": "B", "x": 50, "y": 50, "width": 100, "height": 100}]),
     "overlaps building 'A'"),
    (_plan(buildings=[{"name": "A", "x": 0, "y": 0, "width": 10, "height": 10},
                      {"name": "A", "x": 20, "y": 0, "width": 10, "height": 10}]),
     "duplicate building name"),
    (_plan(buildings=[{"name": "A", "x": 0, "y": 0, "width": 10, "height": 10,
                       "floors": [{"name": "1"}, {"name": "1"}]}]), "lists a floor twice"),
    (_plan(buildings=[{"name": "A", "x": 0, "y": 0, "width": 10, "height": 10,
                       "floors": [{"name": "1", "rooms": ["101", "101"]}]}]),
     "lists a room twice"),
    (_plan(buildings=[{"name": "A", "x": -5, "y": 0, "width": 10, "height": 10}]),
     "greater than or equal to 0"),
    (_plan(buildings=[{"name": "A", "x": 0, "y": 0, "width": 0, "height": 10}]),
     "greater than 0"),
    (_plan(colour="red"), "Extra inputs are not permitted"),
])
def test_bad_plans_fail_at_startup_naming_the_key(plan: dict[str, Any], wanted: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SitePlan.model_validate(plan)
    assert wanted in str(caught.value)


def test_a_plan_loads_from_the_site_config() -> None:
    settings = load(None, sites=[{"id": "s1", "name": "x", "plan": _plan()}])
    plan = settings.sites[0].plan
    assert plan is not None and [b.name for b in plan.buildings] == ["A", "B"]
    assert load(None, sites=[{"id": "s1", "name": "x"}]).sites[0].plan is None


def test_the_example_community_has_a_plan_for_every_building() -> None:
    settings = load(Path(__file__).resolve().parents[2] / "config" / "community.example.yaml")
    plan = settings.sites[0].plan
    assert plan is not None
    planned = {b.name for b in plan.buildings}
    assert {d.building for d in settings.devices} <= planned


# ---- chart buckets: the 1-minute aggregate path and the raw path agree ---------------------

async def test_chart_uses_the_minute_aggregate_when_present(board: Board) -> None:
    """CI has no TimescaleDB: a plain view with the continuous aggregate's columns stands
    in for it, so the query that reads it is checked here too."""
    rows = [(NOW - 3600 + 20 * i, float(i % 17)) for i in range(180)]  # every 20 s
    async with board.db.cursor() as cur:
        await cur.executemany(
            "INSERT INTO readings (ts, device_id, metric, value, received_at) "
            "VALUES (to_timestamp(%s), 'g1', 'lel', %s, now())", rows)
    client = await board.as_user("王值班")
    params = {"metric": "lel", "hours": 1, "buckets": 12}  # 300 s: whole minutes
    raw = (await client.get("/api/devices/g1/readings", params=params)).json()
    assert sum(b["count"] for b in raw["buckets"]) == 180
    # First prove the aggregate is what is read: a view that hides some readings.
    await board.db.execute(
        "CREATE OR REPLACE VIEW readings_1m AS SELECT date_bin(interval '1 minute', ts, "
        "to_timestamp(0)) AS bucket, device_id, metric, min(value) AS low, "
        "max(value) AS high, sum(value) AS total, count(*) AS n FROM readings "
        "WHERE value <> 16 GROUP BY 1, device_id, metric")
    from_minutes = (await client.get("/api/devices/g1/readings", params=params)).json()
    assert sum(b["count"] for b in from_minutes["buckets"]) == 180 - 10  # ten 16s hidden
    await board.db.execute(
        "CREATE OR REPLACE VIEW readings_1m AS SELECT date_bin(interval '1 minute', ts, "
        "to_timestamp(0)) AS bucket, device_id, metric, min(value) AS low, "
        "max(value) AS high, sum(value) AS total, count(*) AS n FROM readings "
        "GROUP BY 1, device_id, metric")
    same = (await client.get("/api/devices/g1/readings", params=params)).json()
    assert same["buckets"] == raw["buckets"]
    # Buckets that are not whole minutes still come from the raw readings.
    odd = {"metric": "lel", "hours": 1, "buckets": 120}  # 30 s
    assert sum(b["count"] for b in (await client.get(
        "/api/devices/g1/readings", params=odd)).json()["buckets"]) == 180

"""Taking a console user's access away (``shouwang users disable``) and giving it back
(``users enable``), and listing users (``users list``), against a real PostgreSQL schema.

Two sites: s1 with a gas alert, s2 with a smoke alert; users are made straight in the
database, and the console runs in-process with a fixed clock.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from psycopg import AsyncConnection

import console.users
from config.settings import ConsoleSettings, DatabaseSettings, DeviceConfig, Settings, SiteConfig
from console import create_app
from console.auth import SESSION_COOKIE
from console.first_admin import FIRST_ADMIN, first_password_file
from console.user_admin import (
    UserAdminError,
    describe_users,
    disable_user,
    enable_user,
)
from console.users import Role, verify_login
from shouwang.bus import MemoryBus
from shouwang.catalog import DeviceType
from shouwang.store import connect
from shouwang.store.registry import sync_registry
from tests.integration.console_app import LogsIn, client_maker, open_alert
from tests.integration.console_auth import PASSWORD, add_user
from tests.integration.test_console_stream import live_streams
from tests.integration.test_console_stream_session import (
    WAIT_S,
    _ends,
    _refused,
    _stack,
)

pytestmark = pytest.mark.integration

NOW = 1_764_124_800.0
_ROOT = Path(__file__).resolve().parents[2]


def _settings(data_root: Path, schema: str) -> Settings:
    return Settings(
        database=DatabaseSettings(data_dir=data_root / "pg", schema_name=schema),
        console=ConsoleSettings(login_attempts=20, login_window_s=60, session_ttl_s=3600),
        sites=(SiteConfig(id="s1", name="幸福里"), SiteConfig(id="s2", name="阳光")),
        devices=(
            DeviceConfig(id="g1", type=DeviceType.GAS, site="s1", name="3号楼燃气"),
            DeviceConfig(id="k2", type=DeviceType.SMOKE, site="s2", name="厨房烟感"),
        ),
    )


@dataclass
class Stack(LogsIn):
    settings: Settings
    dsn: str
    db: AsyncConnection[Any]
    s1_alert: int
    client: Callable[[], httpx.AsyncClient]

    async def audit(self, name: str) -> list[tuple[str, str]]:
        cur = await self.db.execute(
            "SELECT action, actor FROM audit_log WHERE category = 'user' AND subject = %s "
            "ORDER BY id", (name,))
        return [(r[0], r[1]) for r in await cur.fetchall()]


@pytest.fixture
async def stack(pg_dsn: str, db_schema: str, tmp_path: Path) -> AsyncIterator[Stack]:
    settings = _settings(tmp_path, db_schema)
    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        await sync_registry(db, settings.site_map().values(), settings.device_map().values())
        s1 = await open_alert(db, "g1", "s1", "gas", at=NOW, value=50.0)
        await add_user(db, FIRST_ADMIN, Role.ADMIN)
        await add_user(db, "boss", Role.ADMIN)
        await add_user(db, "duty", Role.DUTY_OFFICER, ("s1", "s2"))
        await add_user(db, "leaver", Role.DUTY_OFFICER, ("s1",))
        await add_user(db, "station-s1", Role.FIRE_STATION, ("s1",))
        async with MemoryBus() as bus:
            app = create_app(settings, pg_dsn, bus, schema=db_schema, clock=lambda: NOW)
            async with client_maker(app) as client:
                yield Stack(settings=settings, dsn=pg_dsn, db=db, s1_alert=s1, client=client)
    finally:
        await db.close()


async def test_a_disabled_user_cannot_log_in_and_their_sessions_end(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    first = await stack.as_user("leaver")
    second = await stack.as_user("leaver")
    other = await stack.as_user("duty")
    assert (await first.get("/api/session")).status_code == 200

    assert await disable_user(stack.settings, stack.dsn, name="leaver") == 2
    for cookie_holder in (first, second):
        gone = await cookie_holder.get("/api/session")
        assert gone.status_code == 401 and gone.json() == {"error": "log in first"}
        assert (await cookie_holder.get("/api/alerts")).status_code == 401
    assert (await other.get("/api/session")).status_code == 200  # only theirs ended
    cur = await stack.db.execute(
        "SELECT count(*) FROM console_sessions s JOIN console_users u ON u.id = s.user_id "
        "WHERE u.name = 'leaver'")
    assert await cur.fetchone() == (0,)

    # The right password answers exactly as a wrong one, at the same cost: one argon2 check.
    checks: list[str] = []
    real = console.users._HASHER

    class Counting:
        def verify(self, stored: str, password: str) -> bool:
            checks.append(stored)
            return real.verify(stored, password)

    monkeypatch.setattr(console.users, "_HASHER", Counting())
    answers = []
    for password in (PASSWORD, "wrong-password-1"):
        response = await stack.client().post("/api/login",
                                             json={"name": "leaver", "password": password})
        answers.append((response.status_code, response.json(), "set-cookie" in response.headers))
    assert answers == [(401, {"error": "wrong name or password"}, False)] * 2
    assert len(checks) == 2
    monkeypatch.undo()

    # Disabling twice changes nothing and writes no second audit row.
    assert await disable_user(stack.settings, stack.dsn, name="leaver") is None
    assert await enable_user(stack.settings, stack.dsn, name="leaver") is True
    back = await stack.as_user("leaver")  # the password they had
    assert (await back.get("/api/session")).json()["name"] == "leaver"
    assert await enable_user(stack.settings, stack.dsn, name="leaver") is False
    assert [action for action, _ in await stack.audit("leaver")] == [
        "user_disabled", "user_enabled"]
    assert all(actor.startswith("os:") for _, actor in await stack.audit("leaver"))
    cur = await stack.db.execute("SELECT detail FROM audit_log WHERE action = 'user_disabled'")
    assert await cur.fetchall() == [({"role": "duty_officer", "sessions_ended": 2},)]

    with pytest.raises(UserAdminError, match="no console user named 'nobody'"):
        await disable_user(stack.settings, stack.dsn, name="nobody")


async def test_disabling_ends_open_live_streams_by_the_next_ping(
        pg_dsn: str, db_schema: str, tmp_path: Path) -> None:
    # ``shouwang users disable`` runs in another process: the console learns of it at a ping.
    settings = _settings(tmp_path, db_schema)
    async with _stack(pg_dsn, db_schema, ping_s=0.3) as stack:
        leaving = await stack.as_user("李值班")
        other = await stack.as_user("王微站")
        cookie = leaving.cookies[SESSION_COOKIE]
        async with live_streams(leaving, other, first_ping_s=WAIT_S) as (ended, kept):
            assert await disable_user(settings, pg_dsn, name="李值班") == 1
            await _ends(ended)
            for _ in range(3):  # another user's stream outlives several more checks
                await kept.until(":", WAIT_S)
        await _refused(stack, cookie)


async def test_the_last_enabled_admin_cannot_be_disabled(stack: Stack) -> None:
    password_file = first_password_file(stack.settings)
    password_file.parent.mkdir(parents=True, exist_ok=True)
    password_file.write_text("the-first-password\n")
    admin = await stack.as_user(FIRST_ADMIN)

    assert await disable_user(stack.settings, stack.dsn, name=FIRST_ADMIN) == 1
    assert not password_file.exists()  # it opens nothing now
    assert (await admin.get("/api/session")).status_code == 401
    with pytest.raises(UserAdminError, match="'boss' is the last enabled admin"):
        await disable_user(stack.settings, stack.dsn, name="boss")
    assert await verify_login(stack.db, "boss", PASSWORD) is not None
    # Once another admin can log in again, boss may go.
    assert await enable_user(stack.settings, stack.dsn, name=FIRST_ADMIN)
    assert await disable_user(stack.settings, stack.dsn, name="boss") == 0
    with pytest.raises(UserAdminError, match="last enabled admin"):
        await disable_user(stack.settings, stack.dsn, name=FIRST_ADMIN)
    assert await verify_login(stack.db, FIRST_ADMIN, PASSWORD) is not None
    assert [action for action, _ in await stack.audit("boss")] == ["user_disabled"]


async def test_two_admins_disabling_each_other_at_once_leave_one(stack: Stack) -> None:
    results = await asyncio.gather(
        disable_user(stack.settings, stack.dsn, name=FIRST_ADMIN),
        disable_user(stack.settings, stack.dsn, name="boss"), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["UserAdminError", "int"]
    cur = await stack.db.execute("SELECT count(*) FROM console_users "
                                 "WHERE role = 'admin' AND disabled_at IS NULL")
    assert await cur.fetchone() == (1,)


async def test_a_disabled_user_is_not_offered_as_an_assignee(stack: Stack) -> None:
    duty = await stack.as_user("duty")
    path = f"/api/alerts/{stack.s1_alert}"

    async def offered() -> set[str]:
        response = await duty.get(f"{path}/assignees")
        assert response.status_code == 200
        return {a["name"] for a in response.json()}

    assert {"leaver", "station-s1"} <= await offered()
    await disable_user(stack.settings, stack.dsn, name="leaver")
    assert "leaver" not in await offered()
    assert "station-s1" in await offered()
    refused = await duty.post(f"{path}/assign", json={"assignee": "leaver"})
    assert refused.status_code == 422, refused.text
    assert (await duty.post(f"{path}/assign", json={"assignee": "station-s1"})).status_code == 200
    await enable_user(stack.settings, stack.dsn, name="leaver")
    assert "leaver" in await offered()


async def test_users_list_shows_state_and_last_login_and_never_a_hash(stack: Stack) -> None:
    await stack.as_user("duty")
    await disable_user(stack.settings, stack.dsn, name="leaver")
    text = await describe_users(stack.settings, stack.dsn)
    assert "argon2" not in text
    lines = text.splitlines()
    assert lines[0].split("\t") == ["name", "role", "sites", "state", "created", "last login"]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert sorted(rows) == sorted([FIRST_ADMIN, "boss", "duty", "leaver", "station-s1"])
    assert rows["duty"][1:4] == ["duty_officer", "s1,s2", "enabled"]
    assert rows["duty"][5] == "2025-11-26 10:40"  # NOW in Asia/Shanghai, the console's clock
    assert rows["leaver"][3].startswith("disabled 20")
    assert rows["boss"][2] == "*" and rows["boss"][4].startswith("20")
    assert rows["boss"][5] == "never"


def _cli(args: list[str], config: Path, dsn: str, schema: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOUWANG_")}
    env.update(SHOUWANG_DATABASE__DSN=dsn, SHOUWANG_DATABASE__SCHEMA_NAME=schema)
    return subprocess.run([sys.executable, "-m", "shouwang.cli", *args, "--config", str(config)],
                          capture_output=True, text=True, env=env, cwd=_ROOT, timeout=60,
                          stdin=subprocess.DEVNULL)


async def test_users_disable_enable_and_list_from_the_command_line(
        stack: Stack, tmp_path: Path) -> None:
    config = tmp_path / "shouwang.yaml"
    config.write_text(yaml.safe_dump({"sites": [{"id": "s1", "name": "幸福里"},
                                                {"id": "s2", "name": "阳光"}]},
                                     allow_unicode=True))
    schema = stack.settings.database.schema_name
    leaver = await stack.as_user("leaver")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return _cli(list(args), config, stack.dsn, schema)

    done = await asyncio.to_thread(run, "users", "disable", "leaver")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "disabled leaver; 1 session(s) ended\n"
    assert (await leaver.get("/api/session")).status_code == 401
    listed = await asyncio.to_thread(run, "users", "list")
    assert listed.returncode == 0, listed.stderr
    assert "argon2" not in listed.stdout + listed.stderr
    [line] = [ln for ln in listed.stdout.splitlines() if ln.startswith("leaver\t")]
    assert "\tdisabled " in line

    await disable_user(stack.settings, stack.dsn, name="boss")
    refused = await asyncio.to_thread(run, "users", "disable", FIRST_ADMIN)
    assert refused.returncode == 1
    assert "last enabled admin" in refused.stderr
    missing = await asyncio.to_thread(run, "users", "disable")
    assert missing.returncode == 1 and "needs the user's NAME" in missing.stderr
    unsited = await asyncio.to_thread(run, "users", "add", "li", "--role", "viewer")
    assert unsited.returncode == 1 and "at least one --site" in unsited.stderr

    enabled = await asyncio.to_thread(run, "users", "enable", "leaver")
    assert (enabled.returncode, enabled.stdout) == (0, "enabled leaver\n"), enabled.stderr
    assert await verify_login(stack.db, "leaver", PASSWORD) is not None
    assert [action for action, _ in await stack.audit("leaver")] == [
        "user_disabled", "user_enabled"]

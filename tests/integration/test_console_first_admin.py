"""The first admin of a fresh install: its password reaches the operator in a 0600 file in the
data directory, never in a log record; the file goes once it stops being the way in."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from config.settings import DatabaseSettings, Settings, SiteConfig
from console import create_app
from console.first_admin import FIRST_ADMIN, bootstrap_admin, first_password_file
from console.user_admin import add_user as add_user_command
from console.user_admin import change_password
from console.users import Role, count_users, verify_login
from shouwang.bus import MemoryBus
from shouwang.store import connect
from tests.integration.console_app import asgi_client
from tests.integration.console_auth import add_user, log_in

pytestmark = pytest.mark.integration

_NEW_PASSWORD = "a-new-admin-password"


def _settings(data_root: Path, schema: str) -> Settings:
    return Settings(database=DatabaseSettings(data_dir=data_root / "pg", schema_name=schema),
                    sites=(SiteConfig(id="s1", name="幸福里"),))


async def _until(done: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not done():
            await asyncio.sleep(0.05)
    assert done(), what


@asynccontextmanager
async def _db(pg_dsn: str, schema: str) -> AsyncIterator[AsyncConnection[Any]]:
    conn = await connect(pg_dsn, schema, autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()


async def _bootstrap(pg_dsn: str, settings: Settings) -> None:
    """One first-start check, as the console runs it, to completion."""
    pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
        pg_dsn, open=False, min_size=1, max_size=2,
        kwargs={"autocommit": True,
                "options": f"-c search_path={settings.database.schema_name}"})
    await pool.open(wait=True, timeout=30)
    try:
        await asyncio.wait_for(bootstrap_admin(pool, asyncio.Event(), settings), 30)
    finally:
        await pool.close()


def _leaks(records: list[logging.LogRecord], secret: str) -> list[str]:
    return [record.getMessage() for record in records
            if secret in record.getMessage() or secret in repr(record.args)
            or secret in (record.exc_text or "")]


async def test_first_start_puts_the_password_in_a_private_file_and_never_in_the_log(
        pg_dsn: str, db_schema: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = _settings(tmp_path, db_schema)
    password_file = tmp_path / "first-admin.password"
    assert first_password_file(settings) == password_file
    umask = os.umask(0)  # even a wide-open umask must not widen the file
    try:
        async with MemoryBus() as bus:
            app = create_app(settings, pg_dsn, bus, schema=db_schema)
            async with asgi_client(app) as client:

                def announced() -> bool:  # logged after the commit
                    return any("no console users yet" in r.getMessage() for r in caplog.records)

                await _until(announced, "the first admin announced in the log")
                info = password_file.stat()
                assert stat.S_IMODE(info.st_mode) == 0o600
                assert info.st_uid == os.getuid()
                password = password_file.read_text().strip()
                assert len(password) >= 20
                await log_in(client, FIRST_ADMIN, password)
                session = (await client.get("/api/session")).json()
                assert (session["name"], session["role"], session["sites"]) \
                    == (FIRST_ADMIN, "admin", ["*"])
    finally:
        os.umask(umask)
    assert _leaks(caplog.records, password) == []
    announcement = next(r.getMessage() for r in caplog.records
                        if "no console users yet" in r.getMessage())
    assert str(password_file) in announcement and repr(FIRST_ADMIN) in announcement
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first-admin.password"]  # no temp left


async def test_a_console_that_finds_users_never_writes_the_file(
        pg_dsn: str, db_schema: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, db_schema)
    password_file = first_password_file(settings)
    async with _db(pg_dsn, db_schema) as db:
        await add_user(db, "duty", Role.DUTY_OFFICER)
        await _bootstrap(pg_dsn, settings)
        assert await count_users(db) == 1
    assert not password_file.exists()


async def test_a_file_left_by_an_earlier_install_is_replaced_and_closed(
        pg_dsn: str, db_schema: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, db_schema)
    password_file = first_password_file(settings)
    password_file.write_text("from-a-wiped-database\n")
    password_file.chmod(0o644)
    async with _db(pg_dsn, db_schema) as db:
        await _bootstrap(pg_dsn, settings)
        password = password_file.read_text().strip()
        assert password != "from-a-wiped-database"
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        user = await verify_login(db, FIRST_ADMIN, password)
        assert user is not None and user.role is Role.ADMIN


async def test_no_admin_when_the_password_cannot_be_written(
        pg_dsn: str, db_schema: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings = _settings(blocker, db_schema)
    password_file = first_password_file(settings)
    assert password_file.parent == blocker
    async with _db(pg_dsn, db_schema) as db:
        await _bootstrap(pg_dsn, settings)
        assert await count_users(db) == 0  # nobody could ever have logged in as it
        cur = await db.execute("SELECT count(*) FROM audit_log WHERE category = 'user'")
        assert await cur.fetchone() == (0,)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and str(password_file) in errors[0] and "users add" in errors[0]


async def test_the_file_goes_once_another_admin_exists(pg_dsn: str, db_schema: str,
                                                       tmp_path: Path) -> None:
    settings = _settings(tmp_path, db_schema)
    password_file = first_password_file(settings)
    await _bootstrap(pg_dsn, settings)
    assert password_file.exists()
    await add_user_command(settings, pg_dsn, name="duty", role=Role.DUTY_OFFICER, sites=["s1"],
                           password=_NEW_PASSWORD)
    assert password_file.exists()  # a duty officer cannot manage users: admin is still needed
    await add_user_command(settings, pg_dsn, name="chief", role=Role.ADMIN, sites=["*"],
                           password=_NEW_PASSWORD)
    assert not password_file.exists()


async def test_the_file_goes_once_admin_changes_its_password(pg_dsn: str, db_schema: str,
                                                             tmp_path: Path) -> None:
    settings = _settings(tmp_path, db_schema)
    password_file = first_password_file(settings)
    await _bootstrap(pg_dsn, settings)
    async with _db(pg_dsn, db_schema) as db:
        await add_user(db, "duty", Role.DUTY_OFFICER)
        await change_password(settings, pg_dsn, name="duty", password=_NEW_PASSWORD)
        assert password_file.exists()  # someone else's password: admin's still holds
        await change_password(settings, pg_dsn, name=FIRST_ADMIN, password=_NEW_PASSWORD)
        assert not password_file.exists()
        assert await verify_login(db, FIRST_ADMIN, _NEW_PASSWORD) is not None

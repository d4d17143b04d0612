"""``shouwang users add|disable|enable|list`` and ``shouwang passwd``: console users from
the command line.

The password never comes from argv (other local users can read it in the process list):
it is read from SHOUWANG_USER_PASSWORD, or typed at a terminal, or piped on stdin.
Disabling takes access away without deleting the user (their name stays in the audit
trail and on the alerts they handled); the last enabled admin cannot be disabled.
"""

from __future__ import annotations

import datetime as dt
import getpass
import logging
import os
import sys
import time
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection

from config.settings import Settings
from console.first_admin import FIRST_ADMIN, discard_first_password
from console.users import (
    ALL_SITES,
    Role,
    UserListing,
    create_user,
    hash_password,
    list_users,
)
from shouwang.audit import AuditCategory, local_actor, record
from shouwang.store import connect

__all__ = [
    "PASSWORD_ENV",
    "UserAdminError",
    "add_user",
    "change_password",
    "describe_users",
    "disable_user",
    "enable_user",
    "read_new_password",
]

log = logging.getLogger(__name__)

PASSWORD_ENV = "SHOUWANG_USER_PASSWORD"
_MIN_PASSWORD = 10
_DISABLE_LOCK_ID = 0x5348_5544  # "SHUD": one disable at a time (the last-admin check)


class UserAdminError(ValueError):
    """The user cannot be created as asked."""


def read_new_password() -> str:
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        if sys.stdin.isatty():
            password = getpass.getpass("password: ")
            if getpass.getpass("again: ") != password:
                raise UserAdminError("the two passwords differ")
        else:
            password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < _MIN_PASSWORD:
        raise UserAdminError(f"the password must have at least {_MIN_PASSWORD} characters")
    return password


async def add_user(settings: Settings, dsn: str, *, name: str, role: Role,
                   sites: list[str], password: str) -> None:
    known = set(settings.site_map())
    unknown = [s for s in sites if s != ALL_SITES and s not in known]
    if not sites:
        raise UserAdminError("give at least one --site (or --site '*' for every site)")
    if unknown:
        raise UserAdminError(f"unknown site(s): {', '.join(unknown)}")
    schema = settings.database.schema_name
    conn = await connect(dsn, schema, autocommit=True)
    try:
        user = await create_user(conn, name=name, password=password, role=role, sites=sites)
        await record(conn, category=AuditCategory.USER, action="user_added",
                     actor=local_actor(), now=time.time(), subject=user.name,
                     detail={"role": user.role.value, "sites": list(user.sites)})
    finally:
        await conn.close()
    log.info("created console user %r role=%s sites=%s", user.name, user.role.value,
             ",".join(user.sites))
    if user.role is Role.ADMIN and user.name != FIRST_ADMIN:
        discard_first_password(settings, f"admin {user.name!r} exists now; log in as them")


async def change_password(settings: Settings, dsn: str, *, name: str, password: str) -> None:
    """Set a user's password and end their sessions (a stolen cookie dies with the old one)."""
    conn = await connect(dsn, settings.database.schema_name, autocommit=True)
    try:
        async with conn.transaction():
            cur = await conn.execute(
                "UPDATE console_users SET password_hash = %s WHERE name = %s RETURNING id",
                (hash_password(password), name))
            row = await cur.fetchone()
            if row is None:
                raise UserAdminError(f"no console user named {name!r}")
            await conn.execute("DELETE FROM console_sessions WHERE user_id = %s", (row[0],))
            await record(conn, category=AuditCategory.USER, action="password_changed",
                         actor=local_actor(), now=time.time(), subject=name)
    finally:
        await conn.close()
    log.info("changed the password of console user %r; their sessions ended", name)
    if name == FIRST_ADMIN:
        discard_first_password(settings, f"{FIRST_ADMIN!r} has a new password")


async def _lock_user(conn: AsyncConnection[Any], name: str) -> tuple[int, Role, bool]:
    # Any: tuple rows. Returns (id, role, disabled now), the row locked until the commit.
    cur = await conn.execute(
        "SELECT id, role, disabled_at IS NOT NULL FROM console_users WHERE name = %s "
        "FOR UPDATE", (name,))
    row = await cur.fetchone()
    if row is None:
        raise UserAdminError(f"no console user named {name!r}")
    return int(row[0]), Role(row[1]), bool(row[2])


async def _other_enabled_admins(conn: AsyncConnection[Any], user_id: int) -> int:
    # Any: tuple rows
    cur = await conn.execute(
        "SELECT count(*) FROM console_users WHERE role = %s AND disabled_at IS NULL "
        "AND id <> %s", (Role.ADMIN.value, user_id))
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def disable_user(settings: Settings, dsn: str, *, name: str) -> int | None:
    """Take ``name``'s access away: no login from now on, and every session of theirs ends
    (an open live stream at its next session check). Returns the number of sessions ended,
    or None when the user was disabled already.

    Refuses to disable the last enabled admin: someone must still be able to administer.
    """
    conn = await connect(dsn, settings.database.schema_name, autocommit=True)
    try:
        async with conn.transaction():
            # Two admins disabled at once must not each count the other as still enabled:
            # disables queue, and each counts after the one before has committed.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DISABLE_LOCK_ID,))
            user_id, role, disabled = await _lock_user(conn, name)
            now = time.time()
            if disabled:
                ended = None
            else:
                if role is Role.ADMIN and await _other_enabled_admins(conn, user_id) == 0:
                    raise UserAdminError(
                        f"{name!r} is the last enabled admin: add or enable another admin "
                        f"first (`shouwang users add NAME --role admin --site '*'`)")
                await conn.execute("UPDATE console_users SET disabled_at = to_timestamp(%s) "
                                   "WHERE id = %s", (now, user_id))
                cur = await conn.execute("DELETE FROM console_sessions WHERE user_id = %s",
                                         (user_id,))
                ended = cur.rowcount
                await record(conn, category=AuditCategory.USER, action="user_disabled",
                             actor=local_actor(), now=now, subject=name,
                             detail={"role": role.value, "sessions_ended": ended})
    finally:
        await conn.close()
    if ended is None:
        log.info("console user %r is disabled already", name)
    else:
        log.info("disabled console user %r; %d session(s) ended", name, ended)
    if name == FIRST_ADMIN:
        discard_first_password(settings, f"{FIRST_ADMIN!r} is disabled")
    return ended


async def enable_user(settings: Settings, dsn: str, *, name: str) -> bool:
    """Let a disabled user log in again (with the password they had); False when they were
    not disabled."""
    conn = await connect(dsn, settings.database.schema_name, autocommit=True)
    try:
        async with conn.transaction():
            user_id, role, disabled = await _lock_user(conn, name)
            if disabled:
                await conn.execute("UPDATE console_users SET disabled_at = NULL WHERE id = %s",
                                   (user_id,))
                await record(conn, category=AuditCategory.USER, action="user_enabled",
                             actor=local_actor(), now=time.time(), subject=name,
                             detail={"role": role.value})
    finally:
        await conn.close()
    log.info("console user %r %s", name, "enabled" if disabled else "is enabled already")
    return disabled


def _describe(user: UserListing, zone: ZoneInfo) -> str:
    def when(ts: float) -> str:
        return dt.datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M")

    state = "enabled" if user.disabled_at is None else f"disabled {when(user.disabled_at)}"
    last = "never" if user.last_login_at is None else when(user.last_login_at)
    return (f"{user.name}\t{user.role.value}\t{','.join(user.sites)}\t{state}\t"
            f"{when(user.created_at)}\t{last}")


async def describe_users(settings: Settings, dsn: str) -> str:
    """``shouwang users list``: one tab-separated line per user; no password hash, ever."""
    conn = await connect(dsn, settings.database.schema_name, autocommit=True)
    try:
        found = await list_users(conn)
    finally:
        await conn.close()
    zone = ZoneInfo(settings.alerting.timezone)
    header = "name\trole\tsites\tstate\tcreated\tlast login"
    return "\n".join([header, *(_describe(u, zone) for u in found)])

"""``shouwang users add``: creating console users from the command line.

The password never comes from argv (other local users can read it in the process list):
it is read from SHOUWANG_USER_PASSWORD, or typed at a terminal, or piped on stdin.
"""

from __future__ import annotations

import getpass
import logging
import os
import sys
import time

from config.settings import Settings
from console.first_admin import FIRST_ADMIN, discard_first_password
from console.users import ALL_SITES, Role, create_user, hash_password
from shouwang.audit import AuditCategory, local_actor, record
from shouwang.store import connect

__all__ = ["PASSWORD_ENV", "UserAdminError", "add_user", "change_password", "read_new_password"]

log = logging.getLogger(__name__)

PASSWORD_ENV = "SHOUWANG_USER_PASSWORD"
_MIN_PASSWORD = 10


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

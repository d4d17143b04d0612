"""The first admin of a fresh install, and the file that hands its password to the operator.

Logs are shipped and kept (journald, collectors), so the generated password never goes there:
it is written to ``first-admin.password`` in the stack's data directory (the parent of
``database.data_dir``, where ``shouwang run`` keeps everything), mode 0600 from the start, and
only that path is logged. The file goes away once it stops being the way in: when ``admin``
gets a new password, is disabled, or another admin is added (``console.user_admin``). A
console that finds users already never writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from config.settings import Settings
from console.users import ALL_SITES, DuplicateUser, Role, count_users, create_user
from shouwang.audit import AuditCategory, record
from shouwang.private_file import write_private

__all__ = [
    "FIRST_ADMIN",
    "FIRST_PASSWORD_FILE",
    "bootstrap_admin",
    "discard_first_password",
    "first_password_file",
]

log = logging.getLogger(__name__)

FIRST_ADMIN = "admin"
FIRST_PASSWORD_FILE = "first-admin.password"
_PASSWORD_BYTES = 18  # 24 URL-safe characters
_DB_TIMEOUT_S = 5.0
_RETRY_S = 5.0


def first_password_file(settings: Settings) -> Path:
    """Where the first admin's password is written: next to the embedded database."""
    return Path(settings.database.data_dir).absolute().parent / FIRST_PASSWORD_FILE


def discard_first_password(settings: Settings, why: str) -> None:
    """Remove the first admin's password file, if there is one (it no longer opens anything)."""
    path = first_password_file(settings)
    try:
        path.unlink()
    except FileNotFoundError:
        return
    log.info("removed %s: %s", path, why)


async def _create_first_admin(conn: AsyncConnection[Any], password_file: Path) -> None:
    # Any: tuple rows
    if await count_users(conn) > 0:
        return
    password = secrets.token_urlsafe(_PASSWORD_BYTES)
    written = False
    try:
        async with conn.transaction():
            await create_user(conn, name=FIRST_ADMIN, password=password, role=Role.ADMIN,
                              sites=[ALL_SITES])
            await record(conn, category=AuditCategory.USER, action="user_added",
                         actor="system:first-start", now=time.time(), subject=FIRST_ADMIN,
                         detail={"role": Role.ADMIN.value, "sites": [ALL_SITES]})
            # Before the commit: an admin whose password nobody can read is never created.
            write_private(password_file, password + "\n")
            written = True
    except DuplicateUser:
        return  # another console process got there first
    except OSError as err:
        log.error("no console users yet, and the first admin's password cannot be written to "
                  "%s (%s): no user created; make that directory writable by this service's "
                  "user, or create an admin with `shouwang users add NAME --role admin "
                  "--site '*'`", password_file, err)
        return
    except BaseException:
        if written:  # the commit failed: that password opens nothing
            password_file.unlink(missing_ok=True)
        raise
    log.warning("no console users yet: created user %r (admin, every site); its password is in "
                "%s, readable by this service's user only -- log in with it, then add real "
                "users with `shouwang users add` (the file is removed once %r changes its "
                "password or another admin is added)", FIRST_ADMIN, password_file, FIRST_ADMIN)


async def bootstrap_admin(pool: AsyncConnectionPool[AsyncConnection[Any]], stop: asyncio.Event,
                          settings: Settings) -> None:
    """Creates the first admin once the database answers (the console starts without it)."""
    password_file = first_password_file(settings)
    while not stop.is_set():
        try:
            async with pool.connection(timeout=_DB_TIMEOUT_S) as conn:
                await _create_first_admin(conn, password_file)
            return
        except (psycopg.Error, TimeoutError) as err:
            log.debug("first-admin check postponed: %s", err)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _RETRY_S)

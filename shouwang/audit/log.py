"""Writing one audit row: what was done, by whom, to what (``audit_log``)."""

from __future__ import annotations

import getpass
import socket
from enum import StrEnum
from typing import Any

import orjson
from psycopg import AsyncConnection

__all__ = ["AuditCategory", "local_actor", "record"]


class AuditCategory(StrEnum):
    CONFIG = "config"
    USER = "user"
    PRIVACY = "privacy"


def local_actor() -> str:
    """Who runs this process: ``os:user@host`` (the command line has no login)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. an arbitrary container uid
        user = "unknown"
    return f"os:{user}@{socket.gethostname()}"


async def record(conn: AsyncConnection[Any], *, category: AuditCategory,  # Any: tuple rows
                 action: str, actor: str, now: float, subject: str = "",
                 detail: dict[str, Any] | None = None) -> int:  # Any: JSON values
    """Append one row; returns its id. Never pass secrets or health values in ``detail``."""
    cur = await conn.execute(
        "INSERT INTO audit_log (at, actor, category, action, subject, detail) "
        "VALUES (to_timestamp(%s), %s, %s, %s, %s, %s::jsonb) RETURNING id",
        (now, actor, category.value, action, subject, orjson.dumps(detail or {}).decode()))
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])

"""One-off queries a test makes against a PostgreSQL schema, each on its own connection."""

from __future__ import annotations

import re
from typing import Any

from shouwang.store import connect

__all__ = ["db_rows", "db_scalar", "rejected_messages"]


async def db_rows(dsn: str, schema: str, query: str,
                  *args: object) -> list[tuple[Any, ...]]:  # Any: whatever the query selects
    conn = await connect(dsn, schema, autocommit=True)
    try:
        cur = await conn.execute(query, args or None)
        return await cur.fetchall()
    finally:
        await conn.close()


async def db_scalar(dsn: str, schema: str, query: str, *args: object) -> Any:
    """The first column of the first row, or None when there is no row."""
    rows = await db_rows(dsn, schema, query, *args)
    return rows[0][0] if rows else None


def rejected_messages(rows: list[tuple[Any, ...]], reason: str) -> int:
    """Messages the sampled ``(reason, detail)`` rows of ``rejects`` stand for: each detail
    starts with its count."""
    total = 0
    for row_reason, detail in rows:
        if row_reason == reason:
            match = re.match(r"(\d+) messages", detail)
            assert match, detail
            total += int(match.group(1))
    return total

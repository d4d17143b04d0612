"""Opening connections to the store, bound to one schema."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import AsyncConnection

__all__ = ["StoreError", "connect"]


class StoreError(RuntimeError):
    """The database could not be reached or refused a write."""


async def connect(dsn: str, schema: str = "public", *,
                  autocommit: bool = False) -> AsyncConnection[Any]:  # Any: tuple rows
    """A connection whose search_path is ``schema`` (tests isolate themselves by schema)."""
    try:
        return await AsyncConnection.connect(
            dsn, autocommit=autocommit, options=f"-c search_path={schema}",
            application_name="shouwang", connect_timeout=10,
        )
    except psycopg.OperationalError as err:
        raise StoreError(f"cannot connect to PostgreSQL: {err}") from err

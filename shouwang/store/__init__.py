"""The store: PostgreSQL (TimescaleDB when present) through psycopg 3."""

from shouwang.store.db import StoreError, connect
from shouwang.store.readings import ReadingStore, ReadingWriter
from shouwang.store.schema import migrate

__all__ = ["ReadingStore", "ReadingWriter", "StoreError", "connect", "migrate"]

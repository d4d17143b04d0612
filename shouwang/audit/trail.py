"""The merged audit trail: alert actions, silences, config, user and privacy changes.

Each kind keeps its own table (``alert_events`` is an alert's history, a ``silences`` row
is its own record); this view reads them as one list, newest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

__all__ = ["CATEGORIES", "TrailEntry", "TrailQuery", "list_trail"]

CATEGORIES = ("alert", "silence", "config", "user", "privacy")

_TRAIL = """
SELECT extract(epoch FROM at), category, action, actor, subject, site, detail FROM (
    SELECT e.at, 'alert' AS category, e.action, e.actor, e.alert_id::text AS subject, a.site,
           jsonb_build_object('source', e.source, 'from_status', e.from_status,
                              'to_status', e.to_status, 'note', e.note, 'hazard', a.hazard,
                              'device_id', a.device_id) AS detail
    FROM alert_events e JOIN alerts a ON a.id = e.alert_id
    UNION ALL
    SELECT created_at, 'silence', 'silence_added', created_by, id::text, site,
           jsonb_build_object('device_id', device_id, 'building', building,
                              'hazards', hazards, 'starts_at', starts_at, 'ends_at', ends_at,
                              'reason', reason)
    FROM silences
    UNION ALL
    SELECT cancelled_at, 'silence', 'silence_cancelled', cancelled_by, id::text, site,
           jsonb_build_object('device_id', device_id, 'building', building)
    FROM silences WHERE cancelled_at IS NOT NULL
    UNION ALL
    SELECT at, category, action, actor, subject, NULL, detail FROM audit_log
) trail
WHERE category = ANY(%(categories)s)
  AND (%(actor)s::text IS NULL OR actor = %(actor)s)
  AND (%(action)s::text IS NULL OR action = %(action)s)
  AND (%(since)s::float8 IS NULL OR at >= to_timestamp(%(since)s))
  AND (%(until)s::float8 IS NULL OR at < to_timestamp(%(until)s))
  AND (%(sites)s::text[] IS NULL OR site IS NULL OR site = ANY(%(sites)s))
ORDER BY at DESC
LIMIT %(limit)s
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class TrailQuery:
    categories: tuple[str, ...] = CATEGORIES
    actor: str | None = None
    action: str | None = None
    since: float | None = None  # epoch seconds
    until: float | None = None
    sites: tuple[str, ...] | None = None  # None: every site; rows of no site always show
    limit: int = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class TrailEntry:
    at: float
    category: str
    action: str
    actor: str
    subject: str
    site: str | None
    detail: dict[str, Any]  # Any: JSON, its shape depends on the category


async def list_trail(conn: AsyncConnection[Any],  # Any: tuple rows
                     query: TrailQuery) -> list[TrailEntry]:
    cur = await conn.execute(_TRAIL, {
        "categories": list(query.categories), "actor": query.actor, "action": query.action,
        "since": query.since, "until": query.until,
        "sites": None if query.sites is None else list(query.sites), "limit": query.limit})
    return [TrailEntry(at=float(r[0]), category=r[1], action=r[2], actor=r[3], subject=r[4],
                       site=r[5], detail=r[6]) for r in await cur.fetchall()]

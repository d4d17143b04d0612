"""Assigning an alert to a person: a console user who may act on its site, or a person
named in the alerting groups.

An assignment is an attribute of the alert, not a lifecycle state: the status table in
``shouwang.lifecycle`` is left as it is, so an assigned alert still escalates until
someone acknowledges it. Each assignment is kept (``alert_assignments``, the newest is
current) with an audit row in ``alert_events``: who assigned whom, when, from where.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from config.settings import RecipientGroup
from console.users import ALL_SITES, Role
from shouwang.lifecycle import LIVE_STATUSES
from shouwang.models import Alert, AlertStatus
from shouwang.store.alerts import UnknownAlert, get_alert, record_event

__all__ = ["ASSIGNED", "Assignee", "NotAssignable", "assign", "assignees"]

ASSIGNED = "assigned"  # the audit row's action

_USERS = """
SELECT name, role FROM console_users
WHERE role = ANY(%s) AND sites && %s::text[] AND disabled_at IS NULL ORDER BY name
"""


class NotAssignable(ValueError):
    """The alert has ended (resolved or expired): there is nothing left to do."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Assignee:
    name: str
    kind: str    # user | recipient
    detail: str  # the user's role, or the recipient's group


async def assignees(conn: AsyncConnection[Any], site: str,  # Any: tuple rows
                    roles: Sequence[Role], groups: Sequence[RecipientGroup]) -> list[Assignee]:
    """Who an alert of ``site`` can be assigned to: enabled users of ``roles`` who see the site,
    then the people of the alerting groups (a name already listed is not repeated)."""
    cur = await conn.execute(_USERS, ([r.value for r in roles], [ALL_SITES, site]))
    found = [Assignee(name=r[0], kind="user", detail=r[1]) for r in await cur.fetchall()]
    names = {a.name for a in found}
    for group in groups:
        for recipient in group.recipients:
            if recipient.name not in names:
                names.add(recipient.name)
                found.append(Assignee(name=recipient.name, kind="recipient",
                                      detail=group.name))
    return found


async def assign(conn: AsyncConnection[Any], alert_id: int, *,  # Any: tuple rows
                 assignee: str, by: str, note: str, source: str, now: float) -> Alert:
    """Record that ``by`` assigned the live alert to ``assignee``; its status is unchanged."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute("SELECT status FROM alerts WHERE id = %s FOR UPDATE", (alert_id,))
        row = await cur.fetchone()
        if row is None:
            raise UnknownAlert(alert_id)
        status = AlertStatus(row[0])
        if status not in LIVE_STATUSES:
            raise NotAssignable(f"an alert that is {status.value} cannot be assigned")
        await cur.execute(
            "INSERT INTO alert_assignments (alert_id, assignee, assigned_by, source, note, at) "
            "VALUES (%s, %s, %s, %s, %s, to_timestamp(%s))",
            (alert_id, assignee, by, source, note, now))
        await record_event(cur, alert_id, now=now, actor=by, source=source, action=ASSIGNED,
                           status=status, note=f"→ {assignee}" + (f": {note}" if note else ""))
    return await get_alert(conn, alert_id)

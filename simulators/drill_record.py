"""Drills as the database holds them: the list, one drill, and its timeline.

The timeline of a drill whose data is still there comes from the rows themselves: the
onset (ground truth), each drill alert the drill's devices opened (detection), every
message sent about those alerts, and their history (acknowledged, resolved, escalated …).
Once the data is purged, the same story is told from the stored scorecard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from shouwang.models import Severity
from simulators.scorecard import Scorecard, ScoreRow

__all__ = ["DrillRecord", "Expected", "TimelineEntry", "get_drill", "list_drills", "timeline"]

_DRILLS = """
SELECT id, scenario, site, device_id, devices, extract(epoch FROM started_at),
       extract(epoch FROM finished_at), extract(epoch FROM purged_at), report
FROM drills
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Expected:
    device_id: str
    hazard: str
    severity: str
    onset_ts: float


@dataclass(frozen=True, slots=True, kw_only=True)
class DrillRecord:
    id: int
    scenario: str
    site: str
    device_id: str
    devices: tuple[str, ...]
    started_at: float
    finished_at: float | None
    purged_at: float | None
    status: str  # running | finished | failed
    error: str
    ends_at: float | None  # when the scenario stops playing (running drills)
    expected: tuple[Expected, ...]
    scorecard: Scorecard | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineEntry:
    at: float
    kind: str  # onset | detection | notification | acknowledged | resolved | <other action>
    device_id: str
    hazard: str
    alert_id: int | None = None
    severity: str = ""
    channel: str = ""
    receiver: str = ""
    actor: str = ""
    detail: str = ""


def _record(row: Sequence[Any]) -> DrillRecord:  # Any: one database row
    report: dict[str, Any] = row[8] or {}  # Any: JSON values
    card = Scorecard.from_json(report) if "rows" in report else None
    if card is not None:
        expected = tuple(Expected(device_id=r.device_id, hazard=r.hazard,
                                  severity=r.expected_severity, onset_ts=card.onset_ts)
                         for r in card.rows)
    else:
        expected = tuple(Expected(device_id=e["device_id"], hazard=e["hazard"],
                                  severity=e["severity"], onset_ts=float(e["onset_ts"]))
                         for e in report.get("expected", ()))
    finished_at = None if row[6] is None else float(row[6])
    status = ("running" if finished_at is None
              else "failed" if report.get("status") == "failed" else "finished")
    ends_at = report.get("ends_at")
    return DrillRecord(
        id=int(row[0]), scenario=row[1], site=row[2],
        device_id=row[3] or report.get("device_id", ""), devices=tuple(row[4]),
        started_at=float(row[5]), finished_at=finished_at,
        purged_at=None if row[7] is None else float(row[7]), status=status,
        error=str(report.get("error", "")),
        ends_at=None if ends_at is None else float(ends_at), expected=expected,
        scorecard=card)


async def list_drills(conn: AsyncConnection[Any], *,  # Any: tuple rows
                      sites: list[str] | None = None, limit: int = 100) -> list[DrillRecord]:
    """Newest first; only ``sites`` when given (None: every site)."""
    if sites is None:
        cur = await conn.execute(_DRILLS + " ORDER BY started_at DESC, id DESC LIMIT %s",
                                 (limit,))
    else:
        cur = await conn.execute(_DRILLS + " WHERE site = ANY(%s) "
                                 "ORDER BY started_at DESC, id DESC LIMIT %s", (sites, limit))
    return [_record(r) for r in await cur.fetchall()]


async def get_drill(conn: AsyncConnection[Any],  # Any: tuple rows
                    drill_id: int) -> DrillRecord | None:
    cur = await conn.execute(_DRILLS + " WHERE id = %s", (drill_id,))
    row = await cur.fetchone()
    return None if row is None else _record(row)


async def timeline(conn: AsyncConnection[Any],  # Any: tuple rows
                   drill: DrillRecord) -> list[TimelineEntry]:
    """What happened in the drill, oldest first."""
    entries = [TimelineEntry(at=e.onset_ts, kind="onset", device_id=e.device_id,
                             hazard=e.hazard, severity=e.severity) for e in drill.expected]
    if drill.purged_at is not None:
        if drill.scorecard is not None:
            entries += _from_scorecard(drill.scorecard)
        return sorted(entries, key=lambda e: e.at)
    cur = await conn.execute(
        "SELECT id, device_id, hazard, severity, extract(epoch FROM opened_at), message "
        "FROM alerts WHERE drill AND device_id = ANY(%s) AND opened_at >= to_timestamp(%s) "
        "AND (%s::float8 IS NULL OR opened_at <= to_timestamp(%s)) ORDER BY opened_at",
        (list(drill.devices), drill.started_at, drill.finished_at, drill.finished_at))
    alerts = {int(r[0]): r for r in await cur.fetchall()}
    for alert_id, (_, device_id, hazard, severity, opened_at, message) in alerts.items():
        entries.append(TimelineEntry(at=float(opened_at), kind="detection", device_id=device_id,
                                     hazard=hazard, alert_id=alert_id,
                                     severity=Severity(severity).label, detail=message))
    ids = list(alerts)
    cur = await conn.execute(
        "SELECT alert_id, extract(epoch FROM coalesce(sent_at, created_at)), receiver, "
        "channel, status, body FROM notifications WHERE alert_id = ANY(%s)", (ids,))
    for alert_id, at, receiver, channel, status, body in await cur.fetchall():
        alert = alerts[int(alert_id)]
        entries.append(TimelineEntry(at=float(at), kind="notification", device_id=alert[1],
                                     hazard=alert[2], alert_id=int(alert_id), channel=channel,
                                     receiver=receiver, detail=f"{status}: {body}"))
    cur = await conn.execute(
        "SELECT alert_id, extract(epoch FROM at), actor, action, to_status, note "
        "FROM alert_events WHERE alert_id = ANY(%s) AND action <> 'opened'", (ids,))
    for alert_id, at, actor, action, to_status, note in await cur.fetchall():
        alert = alerts[int(alert_id)]
        kind = to_status if to_status in ("acknowledged", "resolved") else action
        entries.append(TimelineEntry(at=float(at), kind=kind, device_id=alert[1],
                                     hazard=alert[2], alert_id=int(alert_id), actor=actor,
                                     detail=note))
    return sorted(entries, key=lambda e: e.at)


def _from_scorecard(card: Scorecard) -> list[TimelineEntry]:
    entries = []
    for row in card.rows:
        def entry(seconds: float, kind: str, channel: str = "",
                  severity: str = "", row: ScoreRow = row) -> TimelineEntry:
            return TimelineEntry(at=card.onset_ts + seconds, kind=kind, device_id=row.device_id,
                                 hazard=row.hazard, alert_id=row.alert_id, channel=channel,
                                 severity=severity)

        if row.detected_s is not None:
            entries.append(entry(row.detected_s, "detection", severity=row.severity or ""))
        entries += [entry(seconds, "notification", channel=channel)
                    for channel, seconds in row.notified_s.items()]
        if row.acknowledged_s is not None:
            entries.append(entry(row.acknowledged_s, "acknowledged"))
        if row.resolved_s is not None:
            entries.append(entry(row.resolved_s, "resolved"))
    return entries

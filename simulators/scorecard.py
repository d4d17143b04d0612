"""A drill's scorecard: how fast each link answered, read back from the database.

For every ground truth (a hazard expected at a device) the scorecard gives the seconds
from onset to: the alert being opened (detection), the first notification sent on each
channel, acknowledgement, and resolution. Expectations without an alert are missed;
alerts at the drill's site that no expectation explains are unexpected (during a drill a
real alarm can still happen: it is listed, not hidden). Stored as JSON in ``drills``,
printable as Markdown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from alerting.templates import hazard_wording
from shouwang.models import Severity
from simulators.models import GroundTruth

__all__ = [
    "ScoreRow",
    "Scorecard",
    "UnexpectedAlert",
    "fail_drill",
    "load_scorecard",
    "read_scorecard",
    "save_scorecard",
    "start_drill_row",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoreRow:
    device_id: str
    hazard: str
    expected_severity: str
    alert_id: int | None = None
    severity: str | None = None  # the worst the alert reached
    detected_s: float | None = None
    notified_s: dict[str, float] = field(default_factory=dict)  # channel -> first sent
    acknowledged_s: float | None = None
    resolved_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnexpectedAlert:
    alert_id: int
    device_id: str
    hazard: str
    severity: str
    opened_s: float  # after the drill started


@dataclass(frozen=True, slots=True, kw_only=True)
class Scorecard:
    drill_id: int
    scenario: str
    site: str
    device_id: str
    started_at: float
    onset_ts: float
    rows: tuple[ScoreRow, ...]
    unexpected: tuple[UnexpectedAlert, ...]

    @property
    def missed(self) -> tuple[ScoreRow, ...]:
        return tuple(r for r in self.rows if r.alert_id is None)

    def to_json(self) -> dict[str, Any]:  # Any: JSON values
        body = asdict(self)
        body["missed"] = [f"{r.device_id}/{r.hazard}" for r in self.missed]
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Scorecard:  # Any: JSON values
        """The scorecard ``to_json`` stored (``drills.report``)."""
        return cls(drill_id=body["drill_id"], scenario=body["scenario"], site=body["site"],
                   device_id=body["device_id"], started_at=body["started_at"],
                   onset_ts=body["onset_ts"],
                   rows=tuple(ScoreRow(**row) for row in body["rows"]),
                   unexpected=tuple(UnexpectedAlert(**u) for u in body["unexpected"]))

    def markdown(self) -> str:
        def seconds(value: float | None) -> str:
            return "—" if value is None else f"{value:.1f} s"

        started = datetime.fromtimestamp(self.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        lines = [f"# 演练成绩单 Drill scorecard #{self.drill_id}: {self.scenario}", "",
                 f"- site: `{self.site}`, device: `{self.device_id}`",
                 f"- started: {started}; times are from the hazard's onset", "",
                 "| device | hazard | expected | reached | detected | first notification "
                 "| acknowledged | resolved |",
                 "|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            notified = ", ".join(f"{channel} {seconds(at)}"
                                 for channel, at in sorted(r.notified_s.items())) or "—"
            lines.append(f"| {r.device_id} | {_named(r.hazard)} | {r.expected_severity} | "
                         f"{r.severity or 'missed'} | {seconds(r.detected_s)} | {notified} | "
                         f"{seconds(r.acknowledged_s)} | {seconds(r.resolved_s)} |")
        lines += ["", "## Missed", ""]
        lines += [f"- {r.device_id}: {_named(r.hazard)} ({r.expected_severity})"
                  for r in self.missed] or ["- none"]
        lines += ["", "## Unexpected alerts", ""]
        lines += [f"- #{u.alert_id} {u.device_id}: {_named(u.hazard)} ({u.severity}), opened "
                  f"{u.opened_s:.1f} s after the drill started" for u in self.unexpected] \
            or ["- none"]
        return "\n".join(lines) + "\n"


def _named(hazard: str) -> str:
    """As every message names the hazard, then its key: 燃气泄漏 Gas leak (`gas`)."""
    return (f"{hazard_wording(hazard, 'zh').name} {hazard_wording(hazard, 'en').name} "
            f"(`{hazard}`)")


async def start_drill_row(conn: AsyncConnection[Any], *, scenario: str, site: str,
                          started_at: float, device_id: str, devices: Sequence[str] = (),
                          truths: Sequence[GroundTruth] = (),
                          ends_at: float | None = None) -> int:  # Any: tuple rows
    """The drill's row while it runs: what it expects, and which devices it plays on (the
    data a purge removes)."""
    running = {"device_id": device_id, "status": "running", "ends_at": ends_at,
               "expected": [{"device_id": t.device_id, "hazard": t.hazard,
                             "severity": t.severity.label, "onset_ts": t.onset_ts}
                            for t in truths]}
    cur = await conn.execute(
        "INSERT INTO drills (scenario, site, started_at, report, device_id, devices) "
        "VALUES (%s, %s, to_timestamp(%s), %s, %s, %s) RETURNING id",
        (scenario, site, started_at, Jsonb(running), device_id,
         list(devices) or [device_id]))
    row = await cur.fetchone()
    if row is None:
        raise RuntimeError("INSERT ... RETURNING gave no row")
    return int(row[0])


async def save_scorecard(conn: AsyncConnection[Any], card: Scorecard,
                         finished_at: float) -> None:  # Any: tuple rows
    await conn.execute("UPDATE drills SET finished_at = to_timestamp(%s), report = %s "
                       "WHERE id = %s", (finished_at, Jsonb(card.to_json()), card.drill_id))


async def fail_drill(conn: AsyncConnection[Any], drill_id: int, finished_at: float,
                     error: str) -> None:  # Any: tuple rows
    """A drill that could not play out: finished, no scorecard, the reason kept."""
    await conn.execute("UPDATE drills SET finished_at = to_timestamp(%s), "
                       "report = report || %s WHERE id = %s",
                       (finished_at, Jsonb({"status": "failed", "error": error}), drill_id))


async def read_scorecard(conn: AsyncConnection[Any], *, drill_id: int, scenario: str,
                         site: str, device_id: str, started_at: float,
                         truths: Sequence[GroundTruth]) -> Scorecard:  # Any: tuple rows
    """Match the alerts opened at ``site`` since ``started_at`` against the ground truth."""
    cur = await conn.execute(
        "SELECT id, device_id, hazard, severity, extract(epoch FROM opened_at), "
        "extract(epoch FROM acknowledged_at), extract(epoch FROM resolved_at) "
        "FROM alerts WHERE site = %s AND opened_at >= to_timestamp(%s) ORDER BY opened_at",
        (site, started_at))
    alerts = await cur.fetchall()
    ids = [int(a[0]) for a in alerts]
    cur = await conn.execute(
        "SELECT alert_id, channel, extract(epoch FROM min(sent_at)) FROM notifications "
        "WHERE alert_id = ANY(%s) AND status = 'sent' GROUP BY alert_id, channel", (ids,))
    sent: dict[int, dict[str, float]] = {}
    for alert_id, channel, at in await cur.fetchall():
        sent.setdefault(int(alert_id), {})[str(channel)] = float(at)

    first: dict[tuple[str, str], Sequence[Any]] = {}  # Any: one row
    for a in alerts:
        first.setdefault((str(a[1]), str(a[2])), a)
    rows = []
    for truth in truths:
        found = first.get((truth.device_id, truth.hazard))
        if found is None:
            rows.append(ScoreRow(device_id=truth.device_id, hazard=truth.hazard,
                                 expected_severity=truth.severity.label))
            continue

        def since_onset(at: Any, onset: float = truth.onset_ts) -> float | None:  # Any: SQL
            return None if at is None else round(float(at) - onset, 3)

        alert_id = int(found[0])
        rows.append(ScoreRow(
            device_id=truth.device_id, hazard=truth.hazard,
            expected_severity=truth.severity.label, alert_id=alert_id,
            severity=Severity(found[3]).label, detected_s=since_onset(found[4]),
            notified_s={channel: round(at - truth.onset_ts, 3)
                        for channel, at in sent.get(alert_id, {}).items()},
            acknowledged_s=since_onset(found[5]), resolved_s=since_onset(found[6])))
    expected = {(t.device_id, t.hazard) for t in truths}
    unexpected = tuple(
        UnexpectedAlert(alert_id=int(a[0]), device_id=str(a[1]), hazard=str(a[2]),
                        severity=Severity(a[3]).label,
                        opened_s=round(float(a[4]) - started_at, 3))
        for a in alerts if (str(a[1]), str(a[2])) not in expected)
    onset = min((t.onset_ts for t in truths), default=started_at)
    return Scorecard(drill_id=drill_id, scenario=scenario, site=site, device_id=device_id,
                     started_at=started_at, onset_ts=onset, rows=tuple(rows),
                     unexpected=unexpected)


async def load_scorecard(conn: AsyncConnection[Any], drill_id: int) -> Scorecard | None:
    """A finished drill's stored scorecard; None if unknown or still running."""
    cur = await conn.execute("SELECT report FROM drills WHERE id = %s AND finished_at IS NOT "
                             "NULL AND report ? 'rows'", (drill_id,))
    row = await cur.fetchone()
    return None if row is None else Scorecard.from_json(row[0])

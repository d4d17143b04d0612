"""``shouwang silence add|list|cancel``: maintenance windows from the command line.

Returns the text to show; the CLI writes it to stdout. Who and why are required, since
the silence row is the audit record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection

from alerting.silences import Silence, cancel_silence, create_silence, list_silences

__all__ = ["SilenceRequest", "run_silence_command"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SilenceRequest:
    action: Literal["add", "list", "cancel"]
    site: str | None = None
    building: str | None = None
    device_id: str | None = None
    hazards: Sequence[str] = ()
    minutes: float = 60.0
    by: str = ""
    reason: str = ""
    silence_id: int | None = None


def _describe(silence: Silence, zone: ZoneInfo) -> str:
    until = dt.datetime.fromtimestamp(silence.ends_at, zone).strftime("%Y-%m-%d %H:%M")
    where = " ".join(p for p in (silence.site, silence.building or "",
                                 silence.device_id or "") if p)
    hazards = ",".join(silence.hazards) or "all hazards except sos"
    return (f"#{silence.id} {where} [{hazards}] until {until} by {silence.created_by}: "
            f"{silence.reason}")


async def run_silence_command(conn: AsyncConnection[Any], request: SilenceRequest, *,
                              now: float, timezone: str) -> str:
    zone = ZoneInfo(timezone)
    if request.action == "list":
        found = await list_silences(conn, now)
        return "\n".join(_describe(s, zone) for s in found) or "no silences"
    if request.action == "cancel":
        if request.silence_id is None or not request.by:
            raise ValueError("cancel needs ID and --by")
        if not await cancel_silence(conn, request.silence_id, by=request.by, now=now):
            raise ValueError(f"no running silence #{request.silence_id}")
        return f"silence #{request.silence_id} cancelled by {request.by}"
    if request.site is None:
        raise ValueError("add needs --site")
    silence = await create_silence(
        conn, site=request.site, building=request.building, device_id=request.device_id,
        hazards=request.hazards, created_by=request.by, reason=request.reason,
        starts_at=now, ends_at=now + request.minutes * 60.0, now=now)
    return "created " + _describe(silence, zone)

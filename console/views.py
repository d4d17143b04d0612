"""The console's JSON shapes: one function per thing shown, shared by the API and the stream."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.responses import Response

from alerting.templates import hazard_wording
from config.settings import SitePlan
from console.models import BoardNotes, DeviceState
from shouwang.models import Alert, Location, Notification
from shouwang.store.alerts import AlertEvent

__all__ = [
    "JSONResponse",
    "alert_view",
    "board_view",
    "device_view",
    "error_response",
    "event_view",
    "iso_utc",
    "location_view",
    "notification_view",
    "plan_view",
]

# Any: a JSON object; the shapes are fixed by the functions below.
JSONObject = dict[str, Any]


class JSONResponse(Response):
    """orjson, UTF-8 as is (Chinese stays readable), NaN as null instead of an error."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:  # Any: whatever the view functions built
        return orjson.dumps(content)


def error_response(status_code: int, message: str,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code, headers=headers)


def iso_utc(ts: float | None) -> str | None:
    """
    >>> iso_utc(1764124800.25)
    '2025-11-26T02:40:00.250Z'
    >>> iso_utc(None) is None
    True
    """
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def location_view(location: Location) -> JSONObject:
    return {
        "building": location.building, "unit": location.unit, "floor": location.floor,
        "room": location.room, "lat": location.lat, "lon": location.lon,
        "text": location.describe(),
    }


def alert_view(alert: Alert) -> JSONObject:
    return {
        "id": alert.id,
        "site": alert.site,
        "device_id": alert.device_id,
        "location": location_view(alert.location),
        "hazard": alert.hazard,
        # Its name, as the SMS and loudspeakers say it: one wording for every page.
        "hazard_name": [hazard_wording(alert.hazard, "zh").name,
                        hazard_wording(alert.hazard, "en").name],
        "kind": alert.kind.value,
        "severity": alert.severity.label,
        "severity_level": int(alert.severity),
        "status": alert.status.value,
        "opened_at": iso_utc(alert.opened_at),
        "acknowledged_at": iso_utc(alert.acknowledged_at),
        "resolved_at": iso_utc(alert.resolved_at),
        "last_value": alert.last_value,
        "message": alert.message,
        "drill": alert.drill,
    }


def _note(note: str, hidden: bool) -> JSONObject:
    """A note, or null and ``note_hidden`` for a reader who may not see it."""
    if hidden and note:
        return {"note": None, "note_hidden": True}
    return {"note": note}


def board_view(alert: Alert, notes: BoardNotes | None, *,
               note_hidden: bool = False) -> JSONObject:
    """The alert as the board shows it: with its assignee and escalation. Without notes
    (they could not be read) those keys are left out, and the board keeps what it had.
    ``note_hidden``: the reader may not see the assignment's note."""
    view = alert_view(alert)
    if notes is None:
        return view
    assignment = notes.assignment
    view["assignment"] = None if assignment is None else {
        "assignee": assignment.assignee, "assigned_by": assignment.assigned_by,
        "at": iso_utc(assignment.at), **_note(assignment.note, note_hidden),
        "source": assignment.source,
    }
    escalation = notes.escalation
    if escalation is None:
        view["escalation"] = None
        return view
    upcoming = escalation.next
    view["escalation"] = {
        "policy": escalation.policy, "step": escalation.step, "steps": escalation.steps,
        "groups": list(escalation.groups),
        "next": None if upcoming is None else {
            "number": upcoming.number, "of": upcoming.of, "reminder": upcoming.reminder,
            "groups": list(upcoming.groups), "due_at": iso_utc(upcoming.due_at),
        },
    }
    return view


def event_view(event: AlertEvent, *, note_hidden: bool = False) -> JSONObject:
    return {
        "at": iso_utc(event.at),
        "actor": event.actor,
        "source": event.source,
        "action": event.action,
        "from_status": event.from_status,
        "to_status": event.to_status,
        **_note(event.note, note_hidden),
    }


def device_view(state: DeviceState) -> JSONObject:
    device = state.device
    return {
        "id": device.id,
        "type": device.type.value,
        "site": device.site,
        "name": device.name,
        "location": location_view(device.location),
        "status": state.status.value,
        "last_seen": iso_utc(state.last_seen),
        "battery": state.battery,
        "report_interval_s": device.report_interval_s,
    }


def plan_view(plan: SitePlan | None) -> JSONObject | None:
    if plan is None:
        return None
    return {
        "width": plan.width, "height": plan.height,
        "buildings": [{
            "name": b.name, "label": b.label or b.name, "x": b.x, "y": b.y,
            "width": b.width, "height": b.height,
            "floors": [{"name": f.name, "rooms": list(f.rooms)} for f in b.floors],
        } for b in plan.buildings],
    }


def notification_view(notification: Notification) -> JSONObject:
    return {
        "id": notification.id,
        "alert_id": notification.alert_id,
        "receiver": notification.receiver,
        "channel": notification.channel,
        "body": notification.body,
        "status": notification.status.value,
        "attempts": notification.attempts,
        "last_error": notification.last_error,
        "created_at": iso_utc(notification.created_at),
        "sent_at": iso_utc(notification.sent_at),
    }

"""The OpenAPI 3.1 description of the console's JSON API, served at ``/api/openapi.json``.

Written out by hand next to the handlers; ``tests/unit/test_console_openapi.py`` checks that
every API route is described and every described path is routed.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from console.audit import AUDIT_PATHS
from console.openapi_drills import DRILL_PATHS, DRILL_SCHEMAS
from console.views import JSONResponse
from shouwang.models import NotificationStatus

__all__ = ["OPENAPI", "openapi"]

_ERROR = {"type": "object", "required": ["error"],
          "properties": {"error": {"type": "string"}}}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_LOCATION = {
    "type": "object",
    "properties": {
        "building": {"type": "string"}, "unit": {"type": "string"},
        "floor": {"type": "string"}, "room": {"type": "string"},
        "lat": {"type": ["number", "null"]}, "lon": {"type": ["number", "null"]},
        "text": {"type": "string", "description": "building unit floor room, for people"},
    },
}
_ALERT = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"}, "site": {"type": "string"}, "device_id": {"type": "string"},
        "location": {"$ref": "#/components/schemas/Location"},
        "hazard": {"type": "string", "examples": ["gas", "smoke", "flood", "sos"]},
        "hazard_name": {"type": "array", "items": {"type": "string"}, "minItems": 2,
                        "maxItems": 2, "description": "[Chinese, English], as messages say it",
                        "examples": [["燃气泄漏", "Gas leak"]]},
        "kind": {"enum": ["hazard", "health", "anomaly"]},
        "severity": {"enum": ["blue", "yellow", "orange", "red"]},
        "severity_level": {"type": "integer", "minimum": 1, "maximum": 4},
        "status": {"enum": ["open", "acknowledged", "escalated", "suppressed", "resolved",
                            "expired"]},
        "opened_at": {"type": "string", "format": "date-time"},
        "acknowledged_at": _NULLABLE_TIME, "resolved_at": _NULLABLE_TIME,
        "last_value": {"type": ["number", "null"]}, "message": {"type": "string"},
        "drill": {"type": "boolean"},
        "assignment": {"oneOf": [{"$ref": "#/components/schemas/Assignment"},
                                 {"type": "null"}],
                       "description": "who the alert is assigned to now; left out of a "
                                      "live update when it could not be read"},
        "escalation": {"oneOf": [{"$ref": "#/components/schemas/Escalation"},
                                 {"type": "null"}],
                       "description": "null: no escalation policy covers the alert"},
    },
}
_NOTE = {"type": ["string", "null"],
         "description": "what a person wrote; null when note_hidden"}
_NOTE_HIDDEN = {"type": "boolean", "const": True,
                "description": "present when the note is kept from the reader: on a "
                               "wearable's alert, for roles without health access"}
_ASSIGNMENT = {
    "type": "object",
    "properties": {
        "assignee": {"type": "string"}, "assigned_by": {"type": "string"},
        "at": {"type": "string", "format": "date-time"}, "note": _NOTE,
        "note_hidden": _NOTE_HIDDEN, "source": {"type": "string", "examples": ["console"]},
    },
}
_ESCALATION = {
    "type": "object",
    "properties": {
        "policy": {"type": "string"},
        "step": {"type": "integer", "minimum": 0,
                 "description": "steps reached so far (0: none yet)"},
        "steps": {"type": "integer", "minimum": 1},
        "groups": {"type": "array", "items": {"type": "string"},
                   "description": "who the current step paged (empty: nobody at this "
                                  "severity)"},
        "next": {"oneOf": [{"type": "null"}, {"type": "object", "properties": {
            "number": {"type": "integer"}, "of": {"type": "integer"},
            "reminder": {"type": "boolean"},
            "groups": {"type": "array", "items": {"type": "string"}},
            "due_at": {"type": "string", "format": "date-time"}}}],
            "description": "the next step or reminder and when it fires unless someone "
                           "acknowledges first; null once acknowledged or all sent"},
    },
}
_PLAN = {
    "type": "object",
    "description": "buildings on an SVG canvas (canvas units), floors lowest first",
    "properties": {
        "width": {"type": "number"}, "height": {"type": "number"},
        "buildings": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "label": {"type": "string"},
            "x": {"type": "number"}, "y": {"type": "number"},
            "width": {"type": "number"}, "height": {"type": "number"},
            "floors": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"},
                "rooms": {"type": "array", "items": {"type": "string"}}}}}}}},
    },
}
_EVENT = {
    "type": "object",
    "properties": {
        "at": {"type": "string", "format": "date-time"}, "actor": {"type": "string"},
        "source": {"type": "string"}, "action": {"type": "string"},
        "from_status": {"type": ["string", "null"]}, "to_status": {"type": "string"},
        "note": _NOTE, "note_hidden": _NOTE_HIDDEN,
    },
}
_DEVICE = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "type": {"enum": ["gas", "smoke", "water", "electrical", "wearable"]},
        "site": {"type": "string"},
        "name": {"type": "string", "description": "free text from the registry: show as text"},
        "location": {"$ref": "#/components/schemas/Location"},
        "status": {"enum": ["online", "offline", "unknown"]},
        "last_seen": _NULLABLE_TIME, "battery": {"type": ["number", "null"]},
        "report_interval_s": {"type": "number"},
    },
}
_NOTIFICATION = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"}, "alert_id": {"type": "integer"},
        "receiver": {"type": "string"}, "channel": {"type": "string"},
        "body": {"type": "string"}, "status": {"enum": [s.value for s in NotificationStatus]},
        "attempts": {"type": "integer"}, "last_error": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"}, "sent_at": _NULLABLE_TIME,
    },
}
_SESSION = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "role": {"enum": ["admin", "duty_officer", "fire_station", "viewer", "care"]},
        "sites": {"type": "array", "items": {"type": "string"},
                  "description": "'*' means every site"},
        "csrf_token": {"type": "string",
                       "description": "send it as X-CSRF-Token on every POST"},
    },
}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:  # Any: JSON
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(name: str) -> dict[str, Any]:  # Any: JSON
    return {"type": "array", "items": _ref(name)}


_ERRORS = {
    "401": {"$ref": "#/components/responses/NoSession"},
    "422": {"$ref": "#/components/responses/BadInput"},
    "503": {"$ref": "#/components/responses/Unavailable"},
}
_ACTION_ERRORS = {
    **_ERRORS,
    "403": _json(_ERROR, "the role may not do this, or the CSRF token is missing or wrong"),
    "404": _json(_ERROR, "no such alert on the user's sites"),
    "409": _json(_ERROR, "the alert's status does not allow this change"),
    "413": _json(_ERROR, "body larger than 16 KiB"),
    "415": _json(_ERROR, "not a JSON body"),
}
_ALERT_ID = {"name": "alert_id", "in": "path", "required": True,
             "schema": {"type": "integer", "minimum": 1}}
_DEVICE_ID = {"name": "device_id", "in": "path", "required": True, "schema": {"type": "string"}}
_ACTION_BODY = {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "additionalProperties": False,
    "properties": {"note": {"type": "string", "maxLength": 2000},
                   "actor": {"type": "string", "deprecated": True,
                             "description": "ignored: the logged-in user is recorded"}}}}}}


def _action(summary: str) -> dict[str, Any]:  # Any: JSON
    return {"post": {
        "summary": summary, "parameters": [_ALERT_ID], "requestBody": _ACTION_BODY,
        "security": [{"session": [], "csrf": []}],
        "responses": {"200": _json(_ref("Alert"), "the alert as it is now"), **_ACTION_ERRORS},
    }}


OPENAPI: dict[str, Any] = {  # Any: JSON
    "openapi": "3.1.0",
    "info": {
        "title": "Shouwang console API",
        "version": "1",
        "description": "Live alerts, devices and sent messages of the sites the logged-in "
                       "user may see. Log in with POST /api/login; the session is an "
                       "HttpOnly cookie, and every POST except the login must carry the "
                       "session's CSRF token in X-CSRF-Token. Errors are JSON "
                       "{\"error\": \"...\"}.",
    },
    "security": [{"session": []}],
    "paths": {
        "/api/login": {"post": {
            "summary": "Log in (rate-limited per name and per client address)",
            "security": [],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["name", "password"],
                "properties": {"name": {"type": "string", "maxLength": 64},
                               "password": {"type": "string", "maxLength": 1024}}}}}},
            "responses": {
                "200": _json(_ref("Session"), "logged in; the session cookie is set"),
                "401": _json(_ERROR, "wrong name or password"),
                "415": _json(_ERROR, "not a JSON body"),
                "422": {"$ref": "#/components/responses/BadInput"},
                "429": _json(_ERROR, "too many failed attempts; see Retry-After"),
            },
        }},
        "/api/logout": {"post": {
            "summary": "End this session", "security": [{"session": [], "csrf": []}],
            "responses": {"200": _json({"type": "object"}), "401": _ERRORS["401"],
                          "403": _json(_ERROR, "missing or wrong CSRF token")},
        }},
        "/api/session": {"get": {
            "summary": "Who is logged in, and the CSRF token",
            "responses": {"200": _json(_ref("Session")), "401": _ERRORS["401"]},
        }},
        "/api/alerts": {"get": {
            "summary": "Alerts, most severe and newest first",
            "parameters": [
                {"name": "status", "in": "query", "required": False,
                 "description": "repeat or comma-separate; 'live' = every status that still "
                                "needs attention", "schema": {"type": "string"}},
                {"name": "site", "in": "query", "required": False,
                 "schema": {"type": "string", "maxLength": 64}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 5000,
                            "default": 500}},
            ],
            "responses": {"200": _json(_list("Alert")), **_ERRORS},
        }},
        "/api/alerts/{alert_id}": {"get": {
            "summary": "One alert with its whole history",
            "parameters": [_ALERT_ID],
            "responses": {
                "200": _json({"allOf": [_ref("Alert"), {"type": "object", "properties": {
                    "events": {"type": "array", "items": _ref("AlertEvent")}}}]}),
                "404": _json(_ERROR, "no such alert on the user's sites"), **_ERRORS},
        }},
        "/api/alerts/{alert_id}/ack": _action("Acknowledge (not for viewers)"),
        "/api/alerts/{alert_id}/resolve": _action("Resolve (not for viewers)"),
        "/api/alerts/{alert_id}/assign": {"post": {
            "summary": "Assign a live alert to a person, with a note (not for viewers); "
                       "the status does not change, an audit row is written",
            "parameters": [_ALERT_ID],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False, "required": ["assignee"],
                "properties": {
                    "assignee": {"type": "string", "maxLength": 64,
                                 "description": "one of GET .../assignees"},
                    "note": {"type": "string", "maxLength": 2000}}}}}},
            "security": [{"session": [], "csrf": []}],
            "responses": {"200": _json(_ref("Alert"), "the alert as it is now"),
                          **_ACTION_ERRORS,
                          "409": _json(_ERROR, "the alert has ended"),
                          "422": _json(_ERROR, "a bad body, or an assignee who is neither a "
                                               "user of the site who may act nor a person "
                                               "in the alerting groups")},
        }},
        "/api/alerts/{alert_id}/assignees": {"get": {
            "summary": "Who the alert can be assigned to: users who may act on its site, "
                       "then the people of the alerting groups",
            "parameters": [_ALERT_ID],
            "responses": {
                "200": _json({"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "kind": {"enum": ["user", "recipient"]},
                    "detail": {"type": "string",
                               "description": "the user's role or the person's group"}}}}),
                "404": _json(_ERROR, "no such alert on the user's sites"), **_ERRORS},
        }},
        "/api/devices": {"get": {
            "summary": "Registered devices of the user's sites and how they are doing",
            "parameters": [
                {"name": "type", "in": "query", "required": False,
                 "schema": {"enum": ["gas", "smoke", "water", "electrical", "wearable"]}},
                {"name": "status", "in": "query", "required": False,
                 "schema": {"enum": ["online", "offline", "unknown"]}},
                {"name": "site", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "battery_below", "in": "query", "required": False,
                 "schema": {"type": "number", "minimum": 0, "maximum": 100}},
                {"name": "silent_s", "in": "query", "required": False,
                 "description": "not heard from for this many seconds, or never",
                 "schema": {"type": "number", "exclusiveMinimum": 0}},
            ],
            "responses": {"200": _json(_list("Device")), **_ERRORS},
        }},
        "/api/devices/{device_id}": {"get": {
            "summary": "One device: its metrics, threshold lines and recent alerts",
            "parameters": [_DEVICE_ID],
            "responses": {
                "200": _json({"allOf": [_ref("Device"), {"type": "object", "properties": {
                    "metrics": {"type": "array", "items": {"type": "object"}},
                    "thresholds": {"type": "array", "items": {"type": "object", "properties": {
                        "metric": {"type": "string"}, "hazard": {"type": "string"},
                        "value": {"type": "number"}, "severity": {"type": "string"},
                        "direction": {"enum": ["above", "below"]}}}},
                    "alerts": _list("Alert")}}]}),
                "404": _json(_ERROR, "no such device on the user's sites"), **_ERRORS},
        }},
        "/api/devices/{device_id}/readings": {"get": {
            "summary": "One metric's readings in time buckets (min, mean, max, count)",
            "parameters": [
                _DEVICE_ID,
                {"name": "metric", "in": "query", "required": True,
                 "schema": {"type": "string"}},
                {"name": "hours", "in": "query", "required": False,
                 "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 744,
                            "default": 24}},
                {"name": "buckets", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 10, "maximum": 1000,
                            "default": 120}},
            ],
            "responses": {
                "200": _json({"type": "object", "properties": {
                    "device_id": {"type": "string"}, "metric": {"type": "string"},
                    "start": {"type": "string", "format": "date-time"},
                    "end": {"type": "string", "format": "date-time"},
                    "bucket_s": {"type": "number"},
                    "buckets": {"type": "array", "items": {"type": "object", "properties": {
                        "start": {"type": "string", "format": "date-time"},
                        "min": {"type": "number"}, "mean": {"type": "number"},
                        "max": {"type": "number"}, "count": {"type": "integer"}}}}}}),
                "404": _json(_ERROR, "no such device on the user's sites"), **_ERRORS},
        }},
        "/api/notifications": {"get": {
            "summary": "Messages sent about the user's sites' alerts, newest first",
            "parameters": [
                {"name": "alert_id", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                            "default": 100}},
            ],
            "responses": {"200": _json(_list("Notification")), **_ERRORS},
        }},
        "/api/sites": {"get": {
            "summary": "The user's sites: names, addresses and configured plans",
            "responses": {"200": _json({"type": "array", "items": {
                "type": "object", "properties": {"id": {"type": "string"},
                                                 "name": {"type": "string"},
                                                 "address": {"type": "string"},
                                                 "plan": {"oneOf": [_ref("SitePlan"),
                                                                    {"type": "null"}]}}}}),
                **_ERRORS},
        }},
        "/api/stream": {"get": {
            "summary": "Server-sent events: 'alert' (an Alert as JSON) on every change of "
                       "an alert on the user's sites; 'resync' when the client fell behind "
                       "and must reload /api/alerts; 'ended' just before the server closes "
                       "the stream because the session is gone (logout, new password, "
                       "expiry; re-checked at every keep-alive ping): log in again, do not "
                       "reconnect",
            "responses": {"200": {"description": "an event stream",
                                  "content": {"text/event-stream": {}}},
                          "401": _ERRORS["401"],
                          "503": _json(_ERROR, "too many live viewers")},
        }},
        "/api/openapi.json": {"get": {
            "summary": "This description", "security": [],
            "responses": {"200": _json({"type": "object"})},
        }},
    },
    "components": {
        "securitySchemes": {
            "session": {"type": "apiKey", "in": "cookie", "name": "shouwang_session"},
            "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
        },
        "schemas": {"Alert": _ALERT, "AlertEvent": _EVENT, "Assignment": _ASSIGNMENT,
                    "Escalation": _ESCALATION, "SitePlan": _PLAN, "Device": _DEVICE,
                    "Location": _LOCATION, "Notification": _NOTIFICATION,
                    "Session": _SESSION, "Error": _ERROR},
        "responses": {
            "NoSession": _json(_ERROR, "not logged in"),
            "BadInput": _json(_ERROR, "a parameter or the body is invalid; the message "
                                      "names each bad field"),
            "Unavailable": _json(_ERROR, "the database is unavailable"),
        },
    },
}


OPENAPI["paths"].update(DRILL_PATHS)
OPENAPI["paths"].update(AUDIT_PATHS)
OPENAPI["components"]["schemas"].update(DRILL_SCHEMAS)


async def openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)

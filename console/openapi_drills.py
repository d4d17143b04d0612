"""The OpenAPI paths and schemas of the drill endpoints (``console/drills.py``).

Merged into ``console.openapi.OPENAPI``; the shared responses (NoSession, BadInput,
Unavailable) and the Error schema are defined there.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DRILL_PATHS", "DRILL_SCHEMAS"]

# Any: JSON
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:  # Any: JSON
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:  # Any: JSON
    return _json(_ERROR_REF, description)


_ERRORS = {
    "401": {"$ref": "#/components/responses/NoSession"},
    "422": {"$ref": "#/components/responses/BadInput"},
    "503": {"$ref": "#/components/responses/Unavailable"},
}
_DRILL_ID = {"name": "drill_id", "in": "path", "required": True,
             "schema": {"type": "integer", "minimum": 1}}
_NOT_FOUND = _error("no such drill on the user's sites")
_HAZARD_NAME = {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2,
                "description": "[Chinese, English], as messages say it",
                "examples": [["燃气泄漏", "Gas leak"]]}

_DRILL = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"}, "scenario": {"type": "string"}, "site": {"type": "string"},
        "device_id": {"type": "string"},
        "devices": {"type": "array", "items": {"type": "string"},
                    "description": "every device that published drill data"},
        "status": {"enum": ["running", "finished", "failed"]},
        "playing_here": {"type": "boolean",
                         "description": "this console process is playing it now"},
        "error": {"type": "string", "description": "why a failed drill failed; \"abandoned: "
                                                   "…\" when its player stopped heart-beating"},
        "started_at": _TIME, "onset_at": _TIME, "ends_at": _NULLABLE_TIME,
        "finished_at": _NULLABLE_TIME,
        "purged_at": {**_NULLABLE_TIME, "description": "when its data was deleted"},
        "expected": {"type": "array", "items": {"type": "object", "properties": {
            "device_id": {"type": "string"}, "hazard": {"type": "string"},
            "hazard_name": _HAZARD_NAME,
            "severity": {"enum": ["blue", "yellow", "orange", "red"]}}}},
        "detected": {"type": ["integer", "null"]},
        "missed": {"type": ["array", "null"], "items": {"type": "string"}},
    },
}
_TIMELINE_ENTRY = {
    "type": "object",
    "properties": {
        "at": _TIME, "t_s": {"type": "number", "description": "seconds from the onset"},
        "kind": {"type": "string", "examples": ["onset", "detection", "notification",
                                                "acknowledged", "resolved", "escalated"]},
        "device_id": {"type": "string"}, "hazard": {"type": "string"},
        "hazard_name": _HAZARD_NAME,
        "alert_id": {"type": ["integer", "null"]}, "severity": {"type": "string"},
        "channel": {"type": "string"}, "receiver": {"type": "string"},
        "actor": {"type": "string"}, "detail": {"type": "string"},
    },
}
_SCORECARD = {
    "type": "object",
    "description": "times in seconds from the onset; null = did not happen",
    "properties": {
        "drill_id": {"type": "integer"}, "scenario": {"type": "string"},
        "site": {"type": "string"}, "device_id": {"type": "string"},
        "started_at": {"type": "number"}, "onset_ts": {"type": "number"},
        "rows": {"type": "array", "items": {"type": "object", "properties": {
            "device_id": {"type": "string"}, "hazard": {"type": "string"},
            "hazard_name": _HAZARD_NAME,
            "expected_severity": {"type": "string"}, "alert_id": {"type": ["integer", "null"]},
            "severity": {"type": ["string", "null"]},
            "detected_s": {"type": ["number", "null"]},
            "notified_s": {"type": "object", "additionalProperties": {"type": "number"}},
            "acknowledged_s": {"type": ["number", "null"]},
            "resolved_s": {"type": ["number", "null"]}}}},
        "unexpected": {"type": "array", "items": {"type": "object", "properties": {
            "alert_id": {"type": "integer"}, "device_id": {"type": "string"},
            "hazard": {"type": "string"}, "hazard_name": _HAZARD_NAME,
            "severity": {"type": "string"},
            "opened_s": {"type": "number", "description": "after the drill started"}}}},
        "missed": {"type": "array", "items": {"type": "string"}},
    },
}
_SCENARIO = {
    "type": "object",
    "properties": {
        "name": {"type": "string"}, "description": {"type": "string"},
        "device_type": {"type": ["string", "null"]},
        "scope": {"enum": ["device", "building", "site"]},
        "expected": {"type": "array", "items": {"type": "object", "properties": {
            "hazard": {"type": "string"}, "hazard_name": _HAZARD_NAME,
            "severity": {"type": "string"}}}},
        "devices": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "string"}, "site": {"type": "string"}, "name": {"type": "string"},
            "type": {"type": "string"}, "place": {"type": "string"}}}},
    },
}
_START_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "additionalProperties": False,
    "required": ["scenario", "site", "device_id"],
    "properties": {
        "scenario": {"type": "string"}, "site": {"type": "string"},
        "device_id": {"type": "string"},
        "speed": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000, "default": 10,
                  "description": "simulated seconds per wall second"},
        "start_after_s": {"type": "number", "minimum": 0, "maximum": 3600, "default": 30},
        "run_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400,
                  "default": 1800},
        "wait_s": {"type": "number", "minimum": 0, "maximum": 7200, "default": 600,
                   "description": "wall seconds to wait for acknowledgement and resolution"},
        "seed": {"type": "integer", "minimum": 0, "default": 7}}}}}}
_POST_SECURITY: list[dict[str, list[str]]] = [{"session": [], "csrf": []}]

DRILL_PATHS: dict[str, Any] = {  # Any: JSON
    "/api/drills": {
        "get": {
            "summary": "Drills on the user's sites, newest first",
            "parameters": [{"name": "limit", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 500,
                                       "default": 50}}],
            "responses": {"200": _json({"type": "array", "items": _ref("Drill")}), **_ERRORS},
        },
        "post": {
            "summary": "Start a drill (admins and duty officers): the scenario is injected "
                       "over MQTT as drill data through the real pipeline",
            "security": _POST_SECURITY, "requestBody": _START_BODY,
            "responses": {
                "200": _json(_ref("Drill"), "started; follow it at /api/drills/{id}"),
                **_ERRORS,
                "403": _error("the role may not start drills, or the CSRF token is wrong"),
                "404": _error("no such site for this user"),
                "409": _error("a drill is already playing on that device"),
                "413": _error("body larger than 16 KiB"),
                "415": _error("not a JSON body"),
            },
        },
    },
    "/api/drills/scenarios": {"get": {
        "summary": "The scenario library with the user's devices each can run on",
        "responses": {"200": _json({"type": "array", "items": _ref("DrillScenario")}),
                      **_ERRORS},
    }},
    "/api/drills/{drill_id}": {"get": {
        "summary": "One drill with its timeline so far and, once finished, its scorecard",
        "parameters": [_DRILL_ID],
        "responses": {
            "200": _json({"allOf": [_ref("Drill"), {"type": "object", "properties": {
                "timeline": {"type": "array", "items": _ref("DrillTimelineEntry")},
                "scorecard": {"oneOf": [_ref("DrillScorecard"), {"type": "null"}]}}}]}),
            "404": _NOT_FOUND, **_ERRORS},
    }},
    "/api/drills/{drill_id}/report.md": {"get": {
        "summary": "The drill's scorecard as Markdown",
        "parameters": [_DRILL_ID],
        "responses": {
            "200": {"description": "the report: Markdown, served as text/plain so browsers "
                                   "show it",
                    "content": {"text/plain": {"schema": {"type": "string"}}}},
            "404": _NOT_FOUND, "409": _error("the drill has no scorecard yet"), **_ERRORS},
    }},
    "/api/drills/{drill_id}/purge": {"post": {
        "summary": "Delete the drill's readings, alerts, their history, messages and "
                   "escalations (admins only); the scorecard stays",
        "parameters": [_DRILL_ID], "security": _POST_SECURITY,
        "responses": {
            "200": _json({"type": "object", "description": "rows deleted per table",
                          "properties": {"drill_id": {"type": "integer"},
                                         "readings": {"type": "integer"},
                                         "alerts": {"type": "integer"}},
                          "additionalProperties": {"type": "integer"}}),
            "403": _error("only admins may delete drill data, or the CSRF token is wrong"),
            "404": _NOT_FOUND, "409": _error("the drill is still running"), **_ERRORS},
    }},
}

DRILL_SCHEMAS: dict[str, Any] = {  # Any: JSON
    "Drill": _DRILL, "DrillTimelineEntry": _TIMELINE_ENTRY, "DrillScorecard": _SCORECARD,
    "DrillScenario": _SCENARIO,
}

"""``GET /api/audit``: the merged audit trail for admins (alert actions, silences, config
changes, console users, residents' data requests), newest first, filterable."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from console.auth import current_session, require_session
from console.context import context_of
from console.params import parse
from console.users import Role
from console.views import JSONResponse, iso_utc
from shouwang.audit import TrailQuery, list_trail
from shouwang.audit.trail import CATEGORIES

__all__ = ["AUDIT_PAGE_ROUTES", "AUDIT_PATHS", "AUDIT_ROUTES", "AuditQuery"]

log = logging.getLogger(__name__)

_DB_TIMEOUT_S = 5.0
_PAGE = Path(__file__).resolve().parent / "static" / "audit.html"
_MANY = ("category",)


class AuditQuery(BaseModel):
    """``?category=config,user&actor=..&action=..&since=ISO&until=ISO&limit=200``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    category: tuple[str, ...] = CATEGORIES
    actor: str | None = Field(default=None, min_length=1, max_length=200)
    action: str | None = Field(default=None, min_length=1, max_length=64)
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(default=200, ge=1, le=2000)

    @field_validator("category", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:  # Any: raw query values, checked below
        parts = [value] if isinstance(value, str) else list(value)
        found = tuple(p.strip() for part in parts for p in str(part).split(",") if p.strip())
        unknown = [c for c in found if c not in CATEGORIES]
        if unknown:
            raise ValueError(f"unknown categories {unknown} (known: {', '.join(CATEGORIES)})")
        return found or CATEGORIES


def _epoch(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


async def audit(request: Request) -> Response:
    context = context_of(request)
    user = (await require_session(request)).user
    if user.role is not Role.ADMIN:
        raise HTTPException(403, f"role {user.role.value} may not read the audit trail")
    params = request.query_params
    raw: dict[str, Any] = {  # Any: raw query values
        name: params.getlist(name) if name in _MANY or len(params.getlist(name)) > 1
        else params[name] for name in params}
    query = parse(AuditQuery, raw)
    sites = None if user.site_filter is None else tuple(user.site_filter)
    async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
        found = await list_trail(conn, TrailQuery(
            categories=query.category, actor=query.actor, action=query.action,
            since=_epoch(query.since), until=_epoch(query.until), sites=sites,
            limit=query.limit))
    return JSONResponse([{"at": iso_utc(e.at), "category": e.category, "action": e.action,
                          "actor": e.actor, "subject": e.subject, "site": e.site,
                          "detail": e.detail} for e in found])


async def audit_page(request: Request) -> Response:
    """The page; its data call answers 403 to anyone but an admin."""
    if await current_session(request) is None:
        return RedirectResponse("/login", status_code=303)
    return FileResponse(_PAGE, media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})


AUDIT_ROUTES: list[BaseRoute] = [Route("/api/audit", audit, methods=["GET"])]
AUDIT_PAGE_ROUTES: list[BaseRoute] = [Route("/audit", audit_page, methods=["GET"])]

_ENTRY = {
    "type": "object",
    "properties": {
        "at": {"type": "string", "format": "date-time"},
        "category": {"enum": list(CATEGORIES)},
        "action": {"type": "string", "examples": ["acknowledged", "silence_added",
                                                  "config_changed", "user_added",
                                                  "resident_deleted"]},
        "actor": {"type": "string", "description": "console user, or os:user@host"},
        "subject": {"type": "string", "description": "alert id, silence id, config hash, "
                    "user name or resident id"},
        "site": {"type": ["string", "null"]},
        "detail": {"type": "object", "description": "by category; config changes list "
                   "key, old and new values with secrets removed"},
    },
}
# Merged into console.openapi.OPENAPI (its shared responses are referenced here).
AUDIT_PATHS: dict[str, Any] = {  # Any: JSON
    "/api/audit": {"get": {
        "summary": "The audit trail, newest first (admins only): alert actions, silences, "
                   "config changes, console users, residents' data requests",
        "parameters": [
            {"name": "category", "in": "query", "schema": {"type": "string"},
             "description": "comma-separated or repeated: " + ", ".join(CATEGORIES)},
            {"name": "actor", "in": "query", "schema": {"type": "string"}},
            {"name": "action", "in": "query", "schema": {"type": "string"}},
            {"name": "since", "in": "query", "schema": {"type": "string",
                                                         "format": "date-time"}},
            {"name": "until", "in": "query", "schema": {"type": "string",
                                                         "format": "date-time"}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                         "maximum": 2000, "default": 200}},
        ],
        "security": [{"session": []}],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": {
                "type": "array", "items": _ENTRY}}}},
            "401": {"$ref": "#/components/responses/NoSession"},
            "403": {"description": "not an admin", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}},
            "422": {"$ref": "#/components/responses/BadInput"},
            "503": {"$ref": "#/components/responses/Unavailable"},
        },
    }},
}

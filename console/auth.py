"""Who is asking: session cookies, CSRF tokens, roles, and the login rate limit.

A session is a random cookie (HttpOnly, SameSite=Strict, Secure over TLS); every request
that changes state must also carry the session's CSRF token in ``X-CSRF-Token``, which a
page on another origin cannot read.
"""

from __future__ import annotations

import hmac
import logging
from enum import StrEnum

from starlette.exceptions import HTTPException
from starlette.requests import Request

from console.context import context_of
from console.users import Role, Session, User, find_session

__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "Action",
    "current_session",
    "require",
    "require_session",
    "roles_allowed",
    "session_token",
]

log = logging.getLogger(__name__)

SESSION_COOKIE = "shouwang_session"
CSRF_HEADER = "x-csrf-token"
_DB_TIMEOUT_S = 5.0
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Action(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    ASSIGN = "assign"


_ALLOWED: dict[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action),
    Role.DUTY_OFFICER: frozenset(Action),
    Role.FIRE_STATION: frozenset(Action),
    Role.VIEWER: frozenset(),
    Role.CARE: frozenset(Action),  # they answer residents' SOS and fall alerts
}


def session_token(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE) or None


async def current_session(request: Request) -> Session | None:
    """The caller's live session, looked up once per request."""
    if "session" in request.scope.get("state", {}):
        found: Session | None = request.state.session
        return found
    token = session_token(request)
    session = None
    if token is not None:
        context = context_of(request)
        async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
            session = await find_session(conn, token, now=context.clock())
    request.state.session = session
    return session


async def require_session(request: Request) -> Session:
    """401 without a session; 403 when a state-changing request lacks its CSRF token."""
    session = await current_session(request)
    if session is None:
        raise HTTPException(401, "log in first")
    if request.method not in _SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
            log.warning("refused %s %s by %s: bad CSRF token", request.method,
                        request.url.path, session.user.name)
            raise HTTPException(403, "missing or wrong CSRF token")
    return session


def roles_allowed(action: Action) -> list[Role]:
    """The roles that may do ``action`` (an alert is assigned only to people who can act)."""
    return [role for role, allowed in _ALLOWED.items() if action in allowed]


def require(user: User, action: Action) -> None:
    if action not in _ALLOWED[user.role]:
        raise HTTPException(403, f"role {user.role.value} may not {action.value}")

"""Logging in and out, and who am I (the first admin of a fresh install: console.first_admin)."""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from console.auth import SESSION_COOKIE, current_session, require_session, session_token
from console.body import json_body
from console.client import client_address
from console.context import context_of
from console.params import LoginBody
from console.users import Session, create_session, delete_session, token_hash, verify_login
from console.views import JSONResponse

__all__ = ["LOGIN_ROUTES", "session_view"]

log = logging.getLogger(__name__)

_DB_TIMEOUT_S = 5.0


def session_view(session: Session) -> dict[str, Any]:  # Any: JSON
    user = session.user
    return {"name": user.name, "role": user.role.value, "sites": list(user.sites),
            "csrf_token": session.csrf_token}


async def login(request: Request) -> Response:
    context = context_of(request)
    body = await json_body(request, LoginBody)
    address = client_address(request)
    wait = context.login_limiter.retry_after(body.name, address, context.clock())
    if wait > 0:
        raise HTTPException(429, "too many failed logins; try again later",
                            headers={"Retry-After": str(int(wait) + 1)})
    async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
        user = await verify_login(conn, body.name, body.password)
        if user is None:
            context.login_limiter.failed(body.name, address, context.clock())
            log.warning("failed login for %r from %s", body.name, address)
            raise HTTPException(401, "wrong name or password")
        token, session = await create_session(conn, user, now=context.clock(),
                                              ttl_s=context.settings.console.session_ttl_s)
    context.login_limiter.succeeded(body.name, address)
    log.info("%s logged in from %s", user.name, address)
    response = JSONResponse(session_view(session))
    response.set_cookie(
        SESSION_COOKIE, token, max_age=int(context.settings.console.session_ttl_s), path="/",
        httponly=True, samesite="strict",
        secure=context.settings.console.secure_cookies or request.url.scheme == "https")
    return response


async def logout(request: Request) -> Response:
    session = await require_session(request)
    context = context_of(request)
    token = session_token(request)
    if token is not None:
        async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
            await delete_session(conn, token)
        # This console's streams of the session end now; other consoles' at their next ping.
        ended = context.feed.end_session(token_hash(token))
        if ended:
            log.info("%s logged out; ended %d live stream(s)", session.user.name, ended)
    response = JSONResponse({"logged_out": True})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


async def whoami(request: Request) -> Response:
    session = await current_session(request)
    if session is None:
        raise HTTPException(401, "log in first")
    return JSONResponse(session_view(session))


LOGIN_ROUTES: list[BaseRoute] = [
    Route("/api/login", login, methods=["POST"]),
    Route("/api/logout", logout, methods=["POST"]),
    Route("/api/session", whoami, methods=["GET"]),
]

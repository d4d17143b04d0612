"""What every console request handler shares, built once in the app's lifespan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request

from config.settings import Settings
from console.board import Policies
from console.live import AlertFeed
from console.login_limit import LoginLimiter
from shouwang.bus import Bus

__all__ = ["ConsoleContext", "context_of"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleContext:
    settings: Settings
    pool: AsyncConnectionPool[AsyncConnection[Any]]  # Any: tuple rows
    bus: Bus
    feed: AlertFeed
    clock: Callable[[], float]
    ping_s: float  # keep-alive interval of the live stream
    login_limiter: LoginLimiter
    policies: Policies  # the escalation policies, for the board's step and countdown


def context_of(request: Request) -> ConsoleContext:
    context: ConsoleContext = request.app.state.console
    return context

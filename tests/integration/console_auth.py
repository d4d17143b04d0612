"""Logging a test client in to the console: users are created straight in the database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
from psycopg import AsyncConnection

from console.users import Role, create_user, hash_password

__all__ = ["PASSWORD", "add_user", "log_in", "logged_in"]

PASSWORD = "correct-horse-battery-staple"
_HASHES: dict[str, str] = {}  # argon2 is slow on purpose: hash each test password once


async def add_user(db: AsyncConnection[Any], name: str, role: Role,  # Any: tuple rows
                   sites: tuple[str, ...] = ("*",), password: str = PASSWORD) -> None:
    if password != PASSWORD:
        await create_user(db, name=name, password=password, role=role, sites=sites)
        return
    if password not in _HASHES:
        _HASHES[password] = hash_password(password)
    await db.execute("INSERT INTO console_users (name, password_hash, role, sites) "
                     "VALUES (%s, %s, %s, %s)", (name, _HASHES[password], role.value, list(sites)))


async def log_in(client: httpx.AsyncClient, name: str, password: str = PASSWORD) -> str:
    """Logs ``client`` in (its cookie jar keeps the session) and makes it send the CSRF
    token on every request; returns the token."""
    response = await client.post("/api/login", json={"name": name, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["csrf_token"]
    client.headers["X-CSRF-Token"] = token
    return token


@asynccontextmanager
async def logged_in(base_url: str, *names: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client per name, each logged in to the console at ``base_url``, closed after."""
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(
            httpx.AsyncClient(trust_env=False, timeout=10, base_url=base_url)) for _ in names]
        for client, name in zip(clients, names, strict=True):
            await log_in(client, name)
        yield clients

"""Console users and their sessions in the database.

Passwords are stored as argon2id hashes; a session cookie is a random token of which only
the SHA-256 is stored, so a copy of the table cannot be replayed as cookies.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from psycopg import AsyncConnection, errors

__all__ = [
    "ALL_SITES",
    "DuplicateUser",
    "Role",
    "Session",
    "User",
    "UserListing",
    "count_users",
    "create_session",
    "create_user",
    "delete_session",
    "find_session",
    "hash_password",
    "list_users",
    "token_hash",
    "verify_login",
]

ALL_SITES = "*"  # in a user's sites: every site, present and future
_TOKEN_BYTES = 32
_HASHER = PasswordHasher()  # argon2id with the library's current recommended cost
# Verified when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


class Role(StrEnum):
    ADMIN = "admin"
    DUTY_OFFICER = "duty_officer"
    FIRE_STATION = "fire_station"
    VIEWER = "viewer"
    CARE = "care"  # elderly-care staff: residents' wearables and their alerts


class DuplicateUser(ValueError):
    """A user with that name exists already."""


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    id: int
    name: str
    role: Role
    sites: tuple[str, ...]

    def sees(self, site: str) -> bool:
        return ALL_SITES in self.sites or site in self.sites

    @property
    def site_filter(self) -> list[str] | None:
        """The sites to restrict queries to; None means every site."""
        return None if ALL_SITES in self.sites else list(self.sites)


@dataclass(frozen=True, slots=True, kw_only=True)
class UserListing:
    """One line of ``shouwang users list``: never the password hash."""

    name: str
    role: Role
    sites: tuple[str, ...]
    created_at: float
    last_login_at: float | None  # None: never logged in
    disabled_at: float | None  # None: the user may log in


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    user: User
    csrf_token: str
    expires_at: float


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def token_hash(token: str) -> bytes:
    """What is stored of a session cookie (and how live streams name their session)."""
    return hashlib.sha256(token.encode()).digest()


def _user(row: tuple[Any, ...]) -> User:  # Any: a database row
    return User(id=row[0], name=row[1], role=Role(row[2]), sites=tuple(row[3]))


async def create_user(conn: AsyncConnection[Any], *, name: str, password: str, role: Role,
                      sites: Iterable[str]) -> User:
    password_hash = hash_password(password)
    try:
        cur = await conn.execute(
            "INSERT INTO console_users (name, password_hash, role, sites) VALUES (%s, %s, %s, %s) "
            "RETURNING id, name, role, sites", (name, password_hash, role.value, list(sites)))
    except errors.UniqueViolation:
        raise DuplicateUser(f"a user named {name!r} exists already") from None
    row = await cur.fetchone()
    assert row is not None
    return _user(row)


async def count_users(conn: AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT count(*) FROM console_users")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def list_users(conn: AsyncConnection[Any]) -> list[UserListing]:  # Any: tuple rows
    cur = await conn.execute(
        "SELECT name, role, sites, extract(epoch FROM created_at), "
        "extract(epoch FROM last_login_at), extract(epoch FROM disabled_at) "
        "FROM console_users ORDER BY name")
    return [UserListing(name=r[0], role=Role(r[1]), sites=tuple(r[2]),
                        created_at=float(r[3]),
                        last_login_at=None if r[4] is None else float(r[4]),
                        disabled_at=None if r[5] is None else float(r[5]))
            for r in await cur.fetchall()]


async def verify_login(conn: AsyncConnection[Any], name: str, password: str) -> User | None:
    """The user, when ``password`` is theirs; None otherwise (same cost either way).

    Runs the hash check in the event loop's thread pool: argon2 is deliberately slow. A
    disabled user is not found, so their right password costs and answers as a wrong one.
    """
    cur = await conn.execute(
        "SELECT id, name, role, sites, password_hash FROM console_users "
        "WHERE name = %s AND disabled_at IS NULL", (name,))
    row = await cur.fetchone()
    stored = _DUMMY_HASH if row is None else str(row[4])
    try:
        await asyncio.to_thread(_HASHER.verify, stored, password)
    except (VerificationError, InvalidHashError):
        return None
    return None if row is None else _user(row)


async def create_session(conn: AsyncConnection[Any], user: User, *, now: float,
                         ttl_s: float) -> tuple[str, Session]:
    """A new session for ``user``: (cookie token, session)."""
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    csrf_token = secrets.token_urlsafe(_TOKEN_BYTES)
    expires_at = now + ttl_s
    await conn.execute(
        "INSERT INTO console_sessions (token_hash, user_id, csrf_token, created_at, expires_at) "
        "VALUES (%s, %s, %s, to_timestamp(%s), to_timestamp(%s))",
        (token_hash(token), user.id, csrf_token, now, expires_at))
    await conn.execute("UPDATE console_users SET last_login_at = to_timestamp(%s) "
                       "WHERE id = %s", (now, user.id))
    # Expired sessions of anyone are of no use: sweep them while here.
    await conn.execute("DELETE FROM console_sessions WHERE expires_at < to_timestamp(%s)", (now,))
    return token, Session(user=user, csrf_token=csrf_token, expires_at=expires_at)


async def find_session(conn: AsyncConnection[Any], token: str, *, now: float) -> Session | None:
    # Disabling deletes the user's sessions; the check here also kills one whose login
    # passed just before the disable and was stored just after it.
    cur = await conn.execute(
        "SELECT u.id, u.name, u.role, u.sites, s.csrf_token, extract(epoch FROM s.expires_at) "
        "FROM console_sessions s JOIN console_users u ON u.id = s.user_id "
        "WHERE s.token_hash = %s AND s.expires_at > to_timestamp(%s) "
        "AND u.disabled_at IS NULL",
        (token_hash(token), now))
    row = await cur.fetchone()
    if row is None:
        return None
    return Session(user=_user(row), csrf_token=row[4], expires_at=float(row[5]))


async def delete_session(conn: AsyncConnection[Any], token: str) -> None:
    await conn.execute("DELETE FROM console_sessions WHERE token_hash = %s", (token_hash(token),))

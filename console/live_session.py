"""Keeping an open live stream's session honest while the stream lasts.

``/api/stream`` checks the session when it opens, but a stream can stay open for a whole
shift. ``SessionWatch`` looks the session up again at every keep-alive interval (one
indexed read by the cookie's hash) and ends the stream once the session is gone: logged
out in another console process, deleted by ``shouwang passwd`` or ``users disable``, or
expired. A logout in this process ends the stream at once instead
(``AlertFeed.end_session``).
"""

from __future__ import annotations

import asyncio
import logging

import psycopg

from console.context import ConsoleContext
from console.live import Viewer
from console.users import Session, User, find_session

__all__ = ["SessionWatch"]

log = logging.getLogger(__name__)

_LOOKUP_TIMEOUT_S = 2.0  # waiting for a pooled connection; the stream is not held up


class SessionWatch:
    """Re-checks ``session`` (whose cookie is ``token``) every ``context.ping_s``.

    ``user`` follows the session as stored, so a change of the user's sites shows in the
    stream by the next check. While the database cannot answer, the session holds until
    its known expiry: live alerts keep flowing through an outage of the database.
    """

    def __init__(self, context: ConsoleContext, token: str, session: Session,
                 viewer: Viewer) -> None:
        self._context = context
        self._token = token
        self._session = session
        self._viewer = viewer
        self._failing = False

    @property
    def user(self) -> User:
        return self._session.user

    async def _lookup(self, now: float) -> Session | None:
        try:
            async with self._context.pool.connection(timeout=_LOOKUP_TIMEOUT_S) as conn:
                found = await find_session(conn, self._token, now=now)
        except psycopg.Error as err:
            if not self._failing:  # once per outage, not at every ping
                log.warning("cannot re-check the live stream session of %s; it holds until "
                            "it expires: %s", self._session.user.name, err)
            self._failing = True
            return self._session
        self._failing = False
        return found

    async def check(self) -> bool:
        """Looks the session up once; False (and the stream ended) when it is gone."""
        now = self._context.clock()
        found = None if now >= self._session.expires_at else await self._lookup(now)
        if found is None:
            log.info("ending a live stream of %s: the session ended",
                     self._session.user.name)
            self._viewer.end_session()
            return False
        self._session = found
        return True

    async def run(self) -> None:
        """Checks at every keep-alive interval until the session is gone (or cancelled)."""
        while True:
            await asyncio.sleep(self._context.ping_s)
            if not await self.check():
                return

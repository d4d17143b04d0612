"""The alerting pages the console serves without a login: the SMS acknowledgement link,
the public CAP 1.2 feed and the loudspeakers' audio clips (read from the database, where
the alerting service stored them).

The console mounts ``public_routes(context_of)``; ``context_of`` gives what a request
needs (settings, connection pool, clock), so this module does not depend on the
console's internals. An acknowledgement is published on ``alert-updates`` so every
open console shows it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from alerting.ack_links import AckLinks, acknowledge_by_link, confirm_page
from alerting.audio_store import clip_size, load_clip, load_clip_part
from alerting.byte_range import Unsatisfiable, requested_range
from alerting.cap import NotPublic, cap_feed, cap_message_of
from alerting.speech import AUDIO_NAME
from config.settings import Settings
from shouwang.bus import Bus, BusError
from shouwang.codec import encode_alert
from shouwang.store.alerts import UnknownAlert

__all__ = ["PublicContext", "public_routes"]

log = logging.getLogger(__name__)

_DB_TIMEOUT_S = 5.0
_PUBLISH_TIMEOUT_S = 5.0
_MAX_ID = 2**63 - 1  # alerts.id is a bigint
_CAP_TYPE = "application/cap+xml; charset=utf-8"
_ATOM_TYPE = "application/atom+xml; charset=utf-8"
# A clip's name is the hash of its voice and words: what it names never changes.
_AUDIO_CACHE = "public, max-age=31536000, immutable"


def _no_such_audio() -> Response:
    return Response(b"no such audio", status_code=404, media_type="text/plain")


class PublicContext(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def pool(self) -> AsyncConnectionPool[AsyncConnection[Any]]: ...  # Any: tuple rows
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def bus(self) -> Bus: ...


def public_routes(context_of: Callable[[Request], PublicContext]) -> list[BaseRoute]:
    def links(settings: Settings) -> AckLinks | None:
        config = settings.alerting
        if config.ack_secret is None:
            return None
        return AckLinks(config.ack_secret.get_secret_value().encode(), config.ack_link_base,
                        config.ack_link_ttl_s)

    async def ack(request: Request) -> Response:
        context = context_of(request)
        signer = links(context.settings)
        if signer is None:
            return HTMLResponse("acknowledgement links are not enabled", status_code=404)
        token = request.path_params["token"]
        async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
            if request.method == "POST":
                page = await acknowledge_by_link(signer, conn, token, context.clock())
            else:
                page = await confirm_page(signer, conn, token, context.clock())
        if page.alert is not None:
            log.info("alert_id=%d acknowledged from an SMS link", page.alert.id)
            try:
                await asyncio.wait_for(context.bus.publish(
                    "alert-updates", [(str(page.alert.id), encode_alert(page.alert))]),
                    _PUBLISH_TIMEOUT_S)
            except (BusError, TimeoutError) as err:  # saved; consoles see it on reload
                log.error("alert_id=%d acknowledged but not published: %s", page.alert.id,
                          err)
        return HTMLResponse(page.html, status_code=page.status,
                            headers={"Cache-Control": "no-store"})

    async def feed(request: Request) -> Response:
        context = context_of(request)
        base = str(request.base_url)
        async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
            body = await cap_feed(conn, context.settings.alerting, context.settings.site_map(),
                                  base_url=base, now=context.clock())
        return Response(body, media_type=_ATOM_TYPE)

    async def message(request: Request) -> Response:
        context = context_of(request)
        alert_id: int = request.path_params["alert_id"]
        if alert_id > _MAX_ID:
            return Response(b"no public alert with that id", status_code=404,
                            media_type="text/plain")
        try:
            async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
                body = await cap_message_of(conn, context.settings.alerting,
                                            context.settings.site_map(), alert_id)
        except (UnknownAlert, NotPublic):
            return Response(b"no public alert with that id", status_code=404,
                            media_type="text/plain")
        return Response(body, media_type=_CAP_TYPE)

    async def audio(request: Request) -> Response:
        # The loudspeaker controller fetches the spoken WAV named in the broadcast message;
        # a browser's <audio> seeks, and a controller resumes, with a byte range.
        name: str = request.path_params["name"]
        if not AUDIO_NAME.match(name):
            return _no_such_audio()
        cached = {"Cache-Control": _AUDIO_CACHE, "ETag": f'"{name[:-4]}"',
                  "Accept-Ranges": "bytes"}
        if request.headers.get("if-none-match") == cached["ETag"]:
            return Response(status_code=304, headers=cached)
        asked = request.headers.get("range")
        # If-Range: the range only holds for this very clip (its ETag); else send it whole.
        if asked is not None and request.headers.get("if-range", cached["ETag"]) \
                != cached["ETag"]:
            asked = None
        head = request.method == "HEAD"
        part = None
        ranged = cached
        async with context_of(request).pool.connection(timeout=_DB_TIMEOUT_S) as conn:
            if asked is not None or head:
                total = await clip_size(conn, name)
                if total is None:
                    return _no_such_audio()
                try:
                    part = None if asked is None else requested_range(asked, total)
                except Unsatisfiable:
                    return Response(status_code=416,
                                    headers={**cached, "Content-Range": f"bytes */{total}"})
                if part is not None:
                    ranged = {**cached, "Content-Range": part.content_range(total)}
                if head:
                    return Response(status_code=200 if part is None else 206,
                                    media_type="audio/wav",
                                    headers={**ranged, "Content-Length": str(
                                        total if part is None else part.length)})
            if part is None:  # no range asked, or a Range header to ignore: the whole clip
                wav = await load_clip(conn, name)
                if wav is None:  # never rendered, or pruned since
                    return _no_such_audio()
                return Response(wav, media_type="audio/wav", headers=cached)
            body = await load_clip_part(conn, name, part.first, part.length)
        if body is None:  # pruned between the two reads
            return _no_such_audio()
        return Response(body, status_code=206, media_type="audio/wav", headers=ranged)

    return [
        Route("/broadcast/audio/{name}", audio, methods=["GET"]),
        Route("/ack/{token}", ack, methods=["GET", "POST"]),
        Route("/api/cap", feed, methods=["GET"]),
        Route("/api/cap/{alert_id:int}.xml", message, methods=["GET"]),
    ]

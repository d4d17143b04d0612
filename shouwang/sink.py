"""A local stand-in for the far end of the internet: an SMS provider, a broadcast controller.

It accepts what apprise's ``json://`` and ``form://`` notifiers POST to
``/{channel}`` and records it in memory (GET ``/messages``) and, when given a file,
as JSON lines. The demo and the tests point their receivers here, since no real
provider is reachable from this machine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shouwang.http import serve

__all__ = ["LocalSink", "SinkMessage"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkMessage:
    channel: str
    received_at: float
    title: str
    body: str


class LocalSink:
    """``async with``-free service: ``await sink.run(stop)``; ``sink.port`` once ``ready``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8025, *,
                 record_file: Path | None = None, max_messages: int = 10_000) -> None:
        self._host = host
        self._port = port
        self._record_file = record_file
        self._max = max_messages
        self.messages: list[SinkMessage] = []
        self.fail_next = 0  # tests: answer 500 to this many requests
        self.ready = asyncio.Event()
        self.port = port
        self.app = Starlette(routes=[
            Route("/messages", self._list, methods=["GET"]),
            Route("/{channel}", self._receive, methods=["POST"]),
        ])

    async def _receive(self, request: Request) -> Response:
        if self.fail_next > 0:
            self.fail_next -= 1
            return JSONResponse({"error": "simulated provider failure"}, status_code=500)
        raw = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return JSONResponse({"error": "body is not JSON"}, status_code=400)
        else:
            form = await request.form()
            data = {k: str(v) for k, v in form.items()}
        if not isinstance(data, dict):
            return JSONResponse({"error": "body must be an object"}, status_code=400)
        message = SinkMessage(channel=request.path_params["channel"], received_at=time.time(),
                              title=str(data.get("title", "")), body=str(data.get("message",
                                                                                   "")))
        self.messages.append(message)
        del self.messages[: -self._max]
        if self._record_file is not None:
            with self._record_file.open("ab") as f:
                f.write(orjson.dumps(asdict(message)) + b"\n")
        log.info("sink received channel=%s title=%s", message.channel, message.title)
        return JSONResponse({"ok": True})

    async def _list(self, request: Request) -> Response:
        return JSONResponse([asdict(m) for m in self.messages])

    def received(self, channel: str) -> list[SinkMessage]:
        return [m for m in self.messages if m.channel == channel]

    async def run(self, stop: asyncio.Event) -> None:
        await serve(self.app, self._host, self._port, stop, on_ready=self._on_ready,
                    lifespan="off")

    def _on_ready(self, port: int) -> None:
        self.port = port
        self.ready.set()

"""The console service: uvicorn serving the console app inside the caller's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator

import uvicorn

from config.settings import Settings
from console.app import close_streams, create_app
from shouwang.bus import Bus

__all__ = ["ConsoleError", "ConsoleService"]

log = logging.getLogger(__name__)

_GRACEFUL_SHUTDOWN_S = 5  # open responses get this long once the streams are closed


class ConsoleError(RuntimeError):
    """The console could not start, or stopped without being asked to."""


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: ``main()`` owns signals and sets ``stop``."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[_Server], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started(self)


class ConsoleService:
    """Serves the duty officer's console on ``settings.console`` until ``stop`` is set.

    ``ready`` is set once the port is bound; ``port`` is then the real port (useful with
    port 0). ``ping_s`` is the keep-alive interval of the live stream.
    """

    def __init__(self, settings: Settings, bus: Bus, dsn: str, *, schema: str = "public",
                 ping_s: float = 15.0) -> None:
        self._settings = settings
        self._ping_s = ping_s
        self._bus = bus
        self._dsn = dsn
        self._schema = schema
        self.ready = asyncio.Event()
        self.port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise ConsoleError("the console has not started yet")
        host = self._settings.console.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def _started(self, server: uvicorn.Server) -> None:
        self.port = server.servers[0].sockets[0].getsockname()[1]
        self.ready.set()
        log.info("console listening on %s", self.url)

    async def _serve(self, server: uvicorn.Server) -> None:
        try:
            await server.serve()
        except SystemExit as err:  # uvicorn's answer to a bind or lifespan failure
            console = self._settings.console
            raise ConsoleError(
                f"the console could not start on {console.host}:{console.port} "
                "(see the log above)") from err

    async def run(self, stop: asyncio.Event) -> None:
        app = create_app(self._settings, self._dsn, self._bus, schema=self._schema,
                         ping_s=self._ping_s)
        config = uvicorn.Config(
            app, host=self._settings.console.host, port=self._settings.console.port,
            log_level="warning", log_config=None, lifespan="on",
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
        )
        server = _Server(config, self._started)
        serving = asyncio.create_task(self._serve(server), name="console.http")
        stopping = asyncio.create_task(stop.wait(), name="console.stop")
        try:
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            close_streams(app)
            server.should_exit = True
            await serving
            self.ready.clear()
        if not stop.is_set():
            raise ConsoleError("the console server stopped on its own")

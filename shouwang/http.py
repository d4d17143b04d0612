"""Serving an ASGI app inside a running service, stopped by the service's ``stop`` event."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Generator
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

__all__ = ["serve"]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # main() owns SIGINT/SIGTERM for the whole process; several servers share it.
        yield


async def serve(app: ASGIApp, host: str, port: int, stop: asyncio.Event, *,
                on_ready: Callable[[int], None] | None = None,
                lifespan: Literal["auto", "on", "off"] = "on") -> None:
    """Serve until ``stop`` is set; ``on_ready`` gets the bound port (useful with port 0)."""
    server = _Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                    lifespan=lifespan, access_log=False))
    serving = asyncio.create_task(server.serve(), name=f"http.serve:{port}")
    try:
        while not server.started:
            if serving.done():
                await serving  # raises the bind or startup error
                raise RuntimeError(f"HTTP server on {host}:{port} stopped during startup")
            await asyncio.sleep(0.01)
        if on_ready is not None:
            on_ready(server.servers[0].sockets[0].getsockname()[1])
        await stop.wait()
    finally:
        server.should_exit = True
        await serving

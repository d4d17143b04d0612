"""Loopback servers that stand in for the far end in tests: a recording sink, a hung peer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from shouwang.sink import LocalSink


@asynccontextmanager
async def running_sink() -> AsyncIterator[LocalSink]:
    """A ``LocalSink`` on a free port, recording what apprise sends it."""
    stop = asyncio.Event()
    local = LocalSink(port=0)
    task = asyncio.create_task(local.run(stop), name="test.sink")
    await asyncio.wait_for(local.ready.wait(), 10)
    try:
        yield local
    finally:
        stop.set()
        await task


@asynccontextmanager
async def hanging_server() -> AsyncIterator[int]:
    """A port that accepts connections and never answers (a channel that hangs)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()

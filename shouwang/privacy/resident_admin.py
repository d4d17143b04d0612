"""``shouwang residents export|delete`` and ``shouwang privacy purge`` from the command line.

An export holds personal health data: written to a file it is created with mode 600
(only the operator's account can read it), and never over an existing file.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import IO

from config.settings import Settings
from shouwang.audit import local_actor
from shouwang.privacy.residents import ResidentError, delete_resident, export_resident
from shouwang.privacy.retention import purge_health
from shouwang.store import connect
from shouwang.wiring import postgres, prepare_store

__all__ = ["run_purge_command", "run_resident_command"]


def _private_file(path: Path) -> IO[bytes]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


async def run_resident_command(settings: Settings, *, action: str, resident_id: str,
                               out: Path | None, confirm: bool, by: str) -> str:
    """Runs the action; returns the line to show the operator."""
    if action == "delete" and not confirm:
        raise ResidentError("deleting a resident's data cannot be undone: add --confirm")
    schema = settings.database.schema_name
    async with postgres(settings) as dsn:
        await prepare_store(dsn, settings)
        conn = await connect(dsn, schema, autocommit=True)
        try:
            if action == "export":
                target = sys.stdout.buffer if out is None else _private_file(out)
                try:
                    counts = await export_resident(conn, settings, resident_id, target,
                                                   actor=local_actor(), now=time.time(),
                                                   requested_by=by)
                finally:
                    if out is not None:
                        target.close()
                    else:
                        target.flush()
                parts = " ".join(f"{k}={v}" for k, v in counts.items())
                return f"exported resident {resident_id}: {parts}"
            done = await delete_resident(conn, settings, resident_id, actor=local_actor(),
                                         now=time.time(), requested_by=by)
        finally:
            await conn.close()
    parts = " ".join(f"{k}={v}" for k, v in done["counts"].items())
    return (f"deleted resident {resident_id}'s personal data ({parts}); alerts kept as "
            f"{done['pseudonym']}. Now remove the resident from the config and rename "
            "their wearables, or the next start brings the names back.")


async def run_purge_command(settings: Settings) -> str:
    schema = settings.database.schema_name
    async with postgres(settings) as dsn:
        await prepare_store(dsn, settings)
        conn = await connect(dsn, schema, autocommit=True)
        try:
            result = await purge_health(conn, settings, now=time.time(), actor=local_actor())
        finally:
            await conn.close()
    if not result.ran:
        return "another process is purging right now; nothing done"
    return (f"deleted {result.deleted} health readings older than "
            f"{settings.privacy.health_retention_days} days")

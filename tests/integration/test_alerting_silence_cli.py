"""``shouwang silence``: maintenance windows from the command line, on a real PostgreSQL.

One real CLI run (add); the other actions call the same function the CLI calls.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from alerting.silence_admin import SilenceRequest, run_silence_command
from alerting.silences import UnsilenceableHazard
from shouwang.store import connect

pytestmark = pytest.mark.integration


def _cli(pg_dsn: str, schema: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHOUWANG_DATABASE__DSN": pg_dsn,
           "SHOUWANG_DATABASE__SCHEMA_NAME": schema}
    return subprocess.run([sys.executable, "-m", "shouwang.cli", "silence", *args],
                          capture_output=True, text=True, env=env, timeout=60, check=False)


async def test_add_list_cancel(pg_dsn: str, db_schema: str) -> None:
    added = _cli(pg_dsn, db_schema, "add", "--site", "sunshine", "--building", "3",
                 "--hazard", "gas", "--minutes", "90", "--by", "li-eng",
                 "--reason", "meter swap")
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("created #1 sunshine 3 [gas] until ")
    assert added.stdout.rstrip().endswith("by li-eng: meter swap")

    conn = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        listed = await run_silence_command(conn, SilenceRequest(action="list"),
                                           now=time.time(), timezone="Asia/Shanghai")
        assert listed.startswith("#1 sunshine 3 [gas]")
        cur = await conn.execute("SELECT extract(epoch FROM ends_at - starts_at), created_by, "
                                 "reason FROM silences")
        assert await cur.fetchall() == [(5400, "li-eng", "meter swap")]
        with pytest.raises(UnsilenceableHazard):
            await run_silence_command(conn, SilenceRequest(
                action="add", site="sunshine", hazards=("sos",), by="x", reason="y"),
                now=0.0, timezone="Asia/Shanghai")
        with pytest.raises(ValueError, match="reason"):
            await run_silence_command(conn, SilenceRequest(action="add", site="sunshine"),
                                      now=0.0, timezone="Asia/Shanghai")
        done = await run_silence_command(conn, SilenceRequest(
            action="cancel", silence_id=1, by="li-eng"), now=time.time(),
            timezone="Asia/Shanghai")
        assert done == "silence #1 cancelled by li-eng"
        with pytest.raises(ValueError, match="no running silence"):
            await run_silence_command(conn, SilenceRequest(
                action="cancel", silence_id=1, by="li-eng"), now=time.time(),
                timezone="Asia/Shanghai")
    finally:
        await conn.close()

"""Per-resident export and deletion on request, on a real PostgreSQL schema, through the
same function the ``shouwang residents`` command runs."""

from __future__ import annotations

import io
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest
from psycopg import AsyncConnection

from shouwang.privacy import ResidentError, delete_resident, export_resident
from shouwang.privacy.resident_admin import run_resident_command
from shouwang.store import connect
from tests.integration.privacy_seed import NAME_A, NOW, privacy_settings, seed

pytestmark = pytest.mark.integration


async def _one(db: AsyncConnection[Any], query: str, *args: Any) -> Any:  # Any: a cell
    cur = await db.execute(query, args)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def _texts_naming(db: AsyncConnection[Any], name: str) -> list[str]:
    """Every stored text that still holds ``name`` (resident-facing tables)."""
    found = []
    for table, column in (("alerts", "message"), ("alert_events", "note"),
                          ("notifications", "body"), ("devices", "name")):
        cur = await db.execute(f"SELECT {column} FROM {table} WHERE {column} LIKE %s",
                               (f"%{name}%",))
        found += [f"{table}.{column}: {r[0]}" for r in await cur.fetchall()]
    return found


async def test_export_holds_everything_about_the_resident_only(pg_dsn: str,
                                                               db_schema: str) -> None:
    settings = privacy_settings()
    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        seeded = await seed(db, settings)
        out = io.BytesIO()
        counts = await export_resident(db, settings, "r-a", out, actor="os:test@host",
                                       now=NOW, requested_by="王奶奶的女儿")
        data = orjson.loads(out.getvalue())
        assert data["resident"]["name"] == NAME_A
        assert [d["id"] for d in data["devices"]] == ["wear-a"]
        assert {r["device_id"] for r in data["readings"]} == {"wear-a"}
        assert sorted({r["metric"] for r in data["readings"]}) == ["battery", "heart_rate",
                                                                   "spo2"]
        assert len(data["readings"]) == 8
        assert [(e["metric"], e["value"]) for e in data["events"]] == [("sos", 1.0)]
        assert sorted(a["id"] for a in data["alerts"]) == sorted(
            [seeded.heart_alert, seeded.sos_alert])
        assert {a["hazard"]: a["last_value"] for a in data["alerts"]}["heart_rate_high"] == 160
        notes = [e["note"] for e in data["alert_events"]]
        assert f"已电话联系{NAME_A}" in notes and f"{NAME_A} 心率 160 bpm" in notes
        assert sorted(n["alert_id"] for n in data["notifications"]) == sorted(
            [seeded.heart_alert, seeded.sos_alert])
        assert counts == {name: len(data[name]) for name in counts}
        assert data["readings"][0]["ts"].endswith("Z")
        cur = await db.execute("SELECT actor, action, subject, detail FROM audit_log")
        rows = await cur.fetchall()
        assert [(r[0], r[1], r[2]) for r in rows] == [("os:test@host", "resident_exported",
                                                       "r-a")]
        assert rows[0][3]["counts"]["readings"] == 8
        assert rows[0][3]["requested_by"] == "王奶奶的女儿"

        # A second export lists the first request.
        again = io.BytesIO()
        await export_resident(db, settings, "r-a", again, actor="x", now=NOW + 1)
        assert [e["action"] for e in orjson.loads(again.getvalue())["earlier_requests"]] == [
            "resident_exported"]
        with pytest.raises(ResidentError):
            await export_resident(db, settings, "nobody", io.BytesIO(), actor="x", now=NOW)
    finally:
        await db.close()


async def test_delete_removes_the_person_and_keeps_the_emergency_record(
        pg_dsn: str, db_schema: str) -> None:
    settings = privacy_settings()
    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        seeded = await seed(db, settings)
        other_before = await _one(db, "SELECT count(*) FROM readings WHERE device_id = 'wear-b'")
        assert await _texts_naming(db, NAME_A)

        done = await delete_resident(db, settings, "r-a", actor="os:test@host", now=NOW,
                                     requested_by="本人")

        assert done["counts"]["readings"] == 8  # 6 heart rates, spo2, the SOS event
        health = await _one(db, "SELECT count(*) FROM readings WHERE device_id = 'wear-a' "
                                "AND metric <> 'battery'")
        assert health == 0
        assert await _one(db, "SELECT count(*) FROM readings WHERE device_id = 'wear-b'") == \
            other_before
        assert await _texts_naming(db, NAME_A) == []
        # The alerts and who acknowledged them stay, without the value or the text.
        cur = await db.execute("SELECT id, hazard, status, last_value, message FROM alerts "
                               "WHERE device_id = 'wear-a' ORDER BY id")
        alerts = await cur.fetchall()
        assert [(r[0], r[1]) for r in alerts] == [(seeded.heart_alert, "heart_rate_high"),
                                                  (seeded.sos_alert, "sos")]
        assert {r[2] for r in alerts if r[0] == seeded.heart_alert} == {"acknowledged"}
        assert all(r[3] is None and done["pseudonym"] in r[4] for r in alerts)
        assert await _one(db, "SELECT actor FROM alert_events WHERE alert_id = %s "
                              "AND to_status = 'acknowledged'", seeded.heart_alert) == "王值班"
        assert await _one(db, "SELECT count(*) FROM notifications WHERE alert_id = ANY(%s)",
                          [seeded.heart_alert, seeded.sos_alert]) == 2
        # Only about the person: gone.
        assert await _one(db, "SELECT count(*) FROM rejects WHERE device_id = 'wear-a'") == 0
        assert await _one(db, "SELECT count(*) FROM detector_state "
                              "WHERE device_id = 'wear-a'") == 0
        assert await _one(db, "SELECT count(*) FROM detector_state "
                              "WHERE device_id = 'wear-b'") == 1
        # The other resident's alert is untouched.
        assert await _one(db, "SELECT last_value FROM alerts WHERE id = %s",
                          seeded.other_alert) == 38.0
        detail = await _one(db, "SELECT detail FROM audit_log WHERE action = 'resident_deleted' "
                                "AND subject = 'r-a'")
        assert detail["pseudonym"] == done["pseudonym"]
        assert detail["counts"]["readings"] == 8 and detail["requested_by"] == "本人"
        assert NAME_A not in orjson.dumps(detail).decode().replace("本人", "")
    finally:
        await db.close()


async def test_the_command_needs_confirm_and_writes_a_private_file(
        pg_dsn: str, db_schema: str, tmp_path: Path) -> None:
    settings = privacy_settings(database={"dsn": pg_dsn, "schema_name": db_schema})
    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        await seed(db, settings)
        with pytest.raises(ResidentError, match="--confirm"):
            await run_resident_command(settings, action="delete", resident_id="r-a", out=None,
                                       confirm=False, by="")
        assert await _one(db, "SELECT count(*) FROM readings WHERE device_id = 'wear-a'") == 9

        target = tmp_path / "r-a.json"
        text = await run_resident_command(settings, action="export", resident_id="r-a",
                                          out=target, confirm=False, by="")
        assert "readings=8" in text
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        assert orjson.loads(target.read_bytes())["resident"]["id"] == "r-a"
        with pytest.raises(FileExistsError):  # never over an earlier export
            await run_resident_command(settings, action="export", resident_id="r-a",
                                       out=target, confirm=False, by="")

        text = await run_resident_command(settings, action="delete", resident_id="r-a",
                                          out=None, confirm=True, by="")
        assert "remove the resident from the config" in text
        # Only the device's battery reading is left.
        assert await _one(db, "SELECT count(*) FROM readings WHERE device_id = 'wear-a'") == 1
        cur = await db.execute("SELECT action FROM audit_log WHERE category = 'privacy' "
                               "ORDER BY id")
        assert [r[0] for r in await cur.fetchall()] == ["resident_exported", "resident_deleted"]
    finally:
        await db.close()

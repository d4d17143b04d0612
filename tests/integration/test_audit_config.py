"""Every start records the effective config when it changed: one audit row with what
changed and no secret, on a real PostgreSQL schema (through ``prepare_store``, which
every service and command runs at start)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from psycopg import AsyncConnection

from config.settings import Settings, load
from console.user_admin import add_user, change_password
from console.users import Role
from shouwang.audit import record_config
from shouwang.store import connect
from shouwang.wiring import prepare_store

pytestmark = pytest.mark.integration

SECRETS = ("mqtt-pw-Xq81Zz", "ack-secret-9fK2LmPq77", "db-pw-Yy55", "botToken77abc",
           "chat-id-4471")


def _settings(schema: str, dsn: str, **overrides: Any) -> Settings:  # Any: config values
    data: dict[str, Any] = {  # Any: raw config
        "database": {"dsn": dsn, "schema_name": schema},
        "sites": [{"id": "s1", "name": "幸福里"}],
        "devices": [{"id": "g1", "type": "gas", "site": "s1", "name": "燃气"}],
        "alerting": {"receivers": [{"name": "sms", "channel": "sms",
                                    "urls": ["json://127.0.0.1:8025/sms"]}]},
    }
    data.update(overrides)
    return load(None, **data)


async def _config_rows(db: AsyncConnection[Any]) -> list[tuple[Any, ...]]:  # Any: cells
    cur = await db.execute("SELECT actor, action, subject, detail FROM audit_log "
                           "WHERE category = 'config' ORDER BY id")
    return list(await cur.fetchall())


async def _all_audit_text(db: AsyncConnection[Any]) -> str:
    cur = await db.execute("SELECT coalesce(string_agg(t::text, ' '), '') FROM "
                           "(SELECT a::text AS t FROM audit_log a "
                           " UNION ALL SELECT v::text FROM config_versions v) x")
    row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def test_a_changed_config_is_one_row_with_the_diff_and_no_secret(
        pg_dsn: str, db_schema: str) -> None:
    first = _settings(db_schema, pg_dsn)
    await prepare_store(pg_dsn, first)
    await prepare_store(pg_dsn, first)  # same config again: nothing new
    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        rows = await _config_rows(db)
        assert [r[1] for r in rows] == ["config_first_seen"]
        assert rows[0][0].startswith("os:") and "@" in rows[0][0]

        secret_dsn = pg_dsn.replace("shouwang@", f"shouwang:{SECRETS[2]}@")
        changed = _settings(
            db_schema, pg_dsn,
            mqtt={"password": SECRETS[0], "username": "ingest"},
            alerting={"receivers": [
                {"name": "sms", "channel": "sms", "urls": ["json://127.0.0.1:8025/sms"]},
                {"name": "tg", "channel": "webhook",
                 "urls": [f"tgram://{SECRETS[3]}/{SECRETS[4]}",
                          f"https://hooks.example.org/x?key={SECRETS[3]}"]}],
                "ack_secret": SECRETS[1]},
            devices=[{"id": "g1", "type": "gas", "site": "s1", "name": "燃气",
                      "thresholds": {"lel": [20.0, 40.0]}}],
            privacy={"health_retention_days": 14})
        # The DSN with a password is what the running system holds; pass it as the
        # settings would carry it (the connection itself uses the test's DSN).
        await prepare_store(pg_dsn, changed.model_copy(
            update={"database": changed.database.model_copy(update={"dsn": secret_dsn})}))

        rows = await _config_rows(db)
        assert [r[1] for r in rows] == ["config_first_seen", "config_changed"]
        detail = rows[1][3]
        changes = {c["key"]: (c["old"], c["new"]) for c in detail["changes"]}
        assert detail["changed"] == len(changes)
        assert detail["previous"] == rows[0][3]["hash"] and detail["hash"] != detail["previous"]
        assert changes["privacy.health_retention_days"] == (30, 14)
        assert changes["devices[g1].thresholds.lel"] == (None, [20.0, 40.0])
        assert changes["mqtt.username"] == (None, "ingest")
        assert changes["mqtt.password"] == (None, "**********")
        assert changes["alerting.ack_secret"] == (None, "**********")
        assert changes["alerting.receivers[tg].urls"] == (
            None, ["tgram://…", "https://hooks.example.org/…"])
        # Set before and after: a DSN shows only that it is set (a rotated password in
        # it is not visible, by design).
        assert "database.dsn" not in changes
        cur = await db.execute("SELECT config->>'database.dsn' FROM config_versions "
                               "WHERE hash = %s", (detail["hash"],))
        assert (await cur.fetchone()) == ("**********",)
        assert "alerting.receivers[sms].urls" not in changes
        text = await _all_audit_text(db)
        for secret in SECRETS:
            assert secret not in text, secret
    finally:
        await db.close()


async def test_record_config_says_none_when_unchanged(pg_dsn: str, db_schema: str) -> None:
    settings = _settings(db_schema, pg_dsn)
    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        first = await record_config(db, settings, actor="a", now=1.0)
        assert first is not None
        assert await record_config(db, settings, actor="b", now=2.0) is None
        other = _settings(db_schema, pg_dsn, privacy={"health_retention_days": 7})
        assert await record_config(db, other, actor="c", now=3.0) is not None
        # Back to the first version: a change again (against the last one, not any).
        assert await record_config(db, settings, actor="d", now=4.0) is not None
        rows = await _config_rows(db)
        assert [(r[0], r[1]) for r in rows] == [("a", "config_first_seen"),
                                                 ("c", "config_changed"),
                                                 ("d", "config_changed")]
        assert rows[2][3]["changes"] == [{"key": "privacy.health_retention_days",
                                          "old": 7, "new": 30}]
    finally:
        await db.close()


async def test_residents_names_stay_out_of_the_config_record(pg_dsn: str,
                                                             db_schema: str) -> None:
    settings = _settings(
        db_schema, pg_dsn,
        devices=[{"id": "w1", "type": "wearable", "site": "s1", "name": "王奶奶的手环"}],
        residents=[{"id": "r1", "name": "王奶奶", "site": "s1", "devices": ["w1"]}])
    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        await record_config(db, settings, actor="a", now=1.0)
        text = await _all_audit_text(db)
        assert "r1" in text and "王奶奶" not in text
    finally:
        await db.close()


async def test_user_management_is_audited(pg_dsn: str, db_schema: str) -> None:
    settings = _settings(db_schema, pg_dsn)
    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        await add_user(settings, pg_dsn, name="护理员小李", role=Role.CARE, sites=["s1"],
                       password="care-password-123")
        await db.execute("INSERT INTO console_sessions (token_hash, user_id, csrf_token, "
                         "created_at, expires_at) SELECT '\\x01', id, 't', now(), "
                         "now() + interval '1 hour' FROM console_users")
        await change_password(settings, pg_dsn, name="护理员小李", password="new-password-456")
        cur = await db.execute("SELECT category, action, subject, detail FROM audit_log "
                               "ORDER BY id")
        rows = await cur.fetchall()
        assert [(r[0], r[1], r[2]) for r in rows] == [("user", "user_added", "护理员小李"),
                                                      ("user", "password_changed", "护理员小李")]
        assert rows[0][3] == {"role": "care", "sites": ["s1"]}
        assert "password-" not in orjson.dumps([r[3] for r in rows]).decode()
        cur = await db.execute("SELECT count(*) FROM console_sessions")
        assert (await cur.fetchone()) == (0,)  # the old sessions ended
    finally:
        await db.close()

"""Schema creation and migrations: TimescaleDB when the extension is there, else plain PostgreSQL.

Migrations are numbered and append-only; each runs once, in a transaction, under an
advisory lock so that several services starting together do not race.
"""

from __future__ import annotations

import logging
from typing import Any

from psycopg import AsyncConnection, sql

from shouwang.catalog import METRICS, DeviceType

__all__ = ["MIGRATIONS", "MINUTE_AGGREGATE_LEAVES_OUT", "has_timescaledb", "migrate"]

log = logging.getLogger(__name__)

_LOCK_ID = 0x5348_5757  # "SHWW": one advisory lock for all schema changes

# Left out of the minute aggregate: drill data (kept apart, purged after drills) and what
# only a wearable measures (health data: its own retention and per-resident deletion work
# on raw rows; a materialised copy would outlive both). Charts of these read raw rows.
MINUTE_AGGREGATE_LEAVES_OUT = tuple(sorted(
    m.key for m in METRICS if set(m.device_types) == {DeviceType.WEARABLE}))

# The console's charts read 1-minute min/max/mean per device and metric from this
# continuous aggregate when readings is a TimescaleDB hypertable of this schema (created
# by a migration for databases already on TimescaleDB, and right after the hypertable for
# new ones); on plain PostgreSQL it does nothing and the charts bucket raw readings.
# WITH NO DATA: creating a continuous aggregate with data cannot run in a transaction.
_MINUTE_AGGREGATE = """
DO $minute$
DECLARE
    ext text;
    hyper boolean;
BEGIN
    SELECT n.nspname INTO ext FROM pg_extension e
        JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'timescaledb';
    IF ext IS NULL THEN
        RETURN;
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables '
            'WHERE hypertable_schema = $1 AND hypertable_name = ''readings'')'
        INTO hyper USING current_schema();
    IF NOT hyper OR to_regclass(format('%I.readings_1m', current_schema())) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format(
        'CREATE MATERIALIZED VIEW %1$I.readings_1m '
        'WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS '
        'SELECT %2$I.time_bucket(interval ''1 minute'', ts) AS bucket, device_id, metric, '
        'min(value) AS low, max(value) AS high, sum(value) AS total, count(*) AS n '
        'FROM %1$I.readings WHERE NOT drill AND metric <> ALL (@WEARER_ONLY@) '
        'GROUP BY 1, device_id, metric WITH NO DATA',
        current_schema(), ext);
    -- A chart reads one device's metric: without this the planner picks the
    -- (metric, bucket) index and filters out every other device. Unnamed: it lives in the
    -- extension's internal schema, shared by every migrated schema.
    EXECUTE format('CREATE INDEX ON %I.readings_1m (device_id, metric, bucket)',
                   current_schema());
    EXECUTE format(
        'SELECT %1$I.add_continuous_aggregate_policy(%2$L::regclass, '
        'start_offset => interval ''2 days'', end_offset => interval ''1 minute'', '
        'schedule_interval => interval ''1 minute'', if_not_exists => true)',
        ext, format('%I.readings_1m', current_schema()));
END
$minute$;
""".replace("@WEARER_ONLY@", "ARRAY[" + ", ".join(
    f"''{metric}''" for metric in MINUTE_AGGREGATE_LEAVES_OUT) + "]")

MIGRATIONS: tuple[str, ...] = (
    # 1: the core tables
    """
    CREATE TABLE sites (
        id text PRIMARY KEY,
        name text NOT NULL,
        address text NOT NULL DEFAULT ''
    );
    CREATE TABLE devices (
        id text PRIMARY KEY,
        type text NOT NULL,
        site text NOT NULL REFERENCES sites(id),
        name text NOT NULL DEFAULT '',
        building text NOT NULL DEFAULT '',
        unit text NOT NULL DEFAULT '',
        floor text NOT NULL DEFAULT '',
        room text NOT NULL DEFAULT '',
        lat double precision,
        lon double precision,
        report_interval_s double precision NOT NULL DEFAULT 60,
        thresholds jsonb NOT NULL DEFAULT '{}',
        status text NOT NULL DEFAULT 'unknown',
        last_seen timestamptz,
        battery double precision,
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE readings (
        ts timestamptz NOT NULL,
        device_id text NOT NULL,
        metric text NOT NULL,
        value double precision NOT NULL,
        seq bigint,
        received_at timestamptz NOT NULL,
        drill boolean NOT NULL DEFAULT false
    );
    -- Redelivery (MQTT QoS 1, Kafka at-least-once) lands on this and is ignored.
    CREATE UNIQUE INDEX readings_device_metric_ts ON readings (device_id, metric, ts);
    CREATE TABLE rejects (
        id bigserial PRIMARY KEY,
        received_at timestamptz NOT NULL,
        topic text NOT NULL,
        device_id text,
        reason text NOT NULL,
        detail text NOT NULL DEFAULT '',
        payload bytea NOT NULL
    );
    CREATE INDEX rejects_reason ON rejects (reason, received_at);
    CREATE TABLE alerts (
        id bigserial PRIMARY KEY,
        site text NOT NULL,
        device_id text NOT NULL,
        hazard text NOT NULL,
        kind text NOT NULL,
        severity smallint NOT NULL,
        status text NOT NULL,
        opened_at timestamptz NOT NULL,
        acknowledged_at timestamptz,
        acknowledged_by text,
        resolved_at timestamptz,
        resolved_by text,
        last_value double precision,
        message text NOT NULL DEFAULT '',
        drill boolean NOT NULL DEFAULT false,
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    -- One live alert per (device, hazard): a repeat updates it instead of opening another.
    CREATE UNIQUE INDEX alerts_one_live ON alerts (device_id, hazard)
        WHERE status IN ('open', 'acknowledged', 'escalated', 'suppressed');
    CREATE INDEX alerts_status ON alerts (status, opened_at);
    CREATE TABLE alert_events (
        id bigserial PRIMARY KEY,
        alert_id bigint NOT NULL REFERENCES alerts(id),
        at timestamptz NOT NULL,
        actor text NOT NULL,
        source text NOT NULL DEFAULT '',
        action text NOT NULL,
        from_status text,
        to_status text NOT NULL,
        note text NOT NULL DEFAULT ''
    );
    CREATE INDEX alert_events_alert ON alert_events (alert_id, at);
    -- The outbox: one row per message; "nothing sent twice" = one row per (alert, step, receiver).
    CREATE TABLE notifications (
        id bigserial PRIMARY KEY,
        alert_id bigint NOT NULL REFERENCES alerts(id),
        step smallint NOT NULL DEFAULT 0,
        receiver text NOT NULL,
        channel text NOT NULL,
        body text NOT NULL,
        status text NOT NULL DEFAULT 'pending',
        attempts integer NOT NULL DEFAULT 0,
        last_error text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL,
        next_attempt_at timestamptz NOT NULL,
        sent_at timestamptz,
        UNIQUE (alert_id, step, receiver)
    );
    CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
    CREATE TABLE drills (
        id bigserial PRIMARY KEY,
        scenario text NOT NULL,
        site text NOT NULL,
        started_at timestamptz NOT NULL,
        finished_at timestamptz,
        report jsonb NOT NULL DEFAULT '{}'
    );
    CREATE TABLE detector_state (
        device_id text NOT NULL,
        detector text NOT NULL,
        state bytea NOT NULL,
        updated_at timestamptz NOT NULL,
        PRIMARY KEY (device_id, detector)
    );
    """,
    # 2 (console): people who log in, and their sessions (only a hash of the cookie is kept)
    """
    CREATE TABLE console_users (
        id bigserial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        password_hash text NOT NULL,
        role text NOT NULL CHECK (role IN ('admin', 'duty_officer', 'fire_station', 'viewer')),
        sites text[] NOT NULL DEFAULT '{}',
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE console_sessions (
        token_hash bytea PRIMARY KEY,
        user_id bigint NOT NULL REFERENCES console_users(id) ON DELETE CASCADE,
        csrf_token text NOT NULL,
        created_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL
    );
    CREATE INDEX console_sessions_user ON console_sessions (user_id);
    """,
    # 3 (alerting): escalation due times (restart-safe), maintenance windows (silences)
    """
    CREATE TABLE escalations (
        alert_id bigint PRIMARY KEY REFERENCES alerts(id),
        policy text NOT NULL,
        next_step smallint NOT NULL,
        due_at timestamptz NOT NULL
    );
    CREATE INDEX escalations_due ON escalations (due_at);
    CREATE TABLE silences (
        id bigserial PRIMARY KEY,
        site text NOT NULL,
        device_id text,
        building text,
        hazards text[] NOT NULL DEFAULT '{}',
        starts_at timestamptz NOT NULL,
        ends_at timestamptz NOT NULL,
        created_by text NOT NULL,
        reason text NOT NULL,
        created_at timestamptz NOT NULL,
        cancelled_at timestamptz,
        cancelled_by text,
        CHECK (ends_at > starts_at)
    );
    CREATE INDEX silences_site ON silences (site, ends_at);
    """,
    # 4 (alerting): the escalator's scans read only what they look for, however long the
    # history: the fallback scan (every 0.2 s) undelivered tried messages, the expiry
    # scan live alerts by their last change.
    """
    CREATE INDEX notifications_undelivered ON notifications (created_at)
        WHERE status <> 'sent' AND attempts > 0;
    CREATE INDEX alerts_live_updated ON alerts (updated_at)
        WHERE status IN ('open', 'escalated', 'suppressed');
    """,
    # 5 (store): a reject consumed twice from Kafka (writer killed between its commit and
    # the offset commit) is stored once; received_at is stamped once, by ingest.
    """
    DELETE FROM rejects a USING rejects b
        WHERE a.id > b.id AND a.topic = b.topic AND a.received_at = b.received_at
          AND md5(a.payload) = md5(b.payload);
    CREATE UNIQUE INDEX rejects_once ON rejects (topic, received_at, md5(payload));
    """,
    # 6 (console): who each alert was assigned to, newest last (the audit row goes to
    # alert_events); the assignee is a person, not a status: the lifecycle stays as it is.
    """
    CREATE TABLE alert_assignments (
        id bigserial PRIMARY KEY,
        alert_id bigint NOT NULL REFERENCES alerts(id),
        assignee text NOT NULL,
        assigned_by text NOT NULL,
        source text NOT NULL DEFAULT '',
        note text NOT NULL DEFAULT '',
        at timestamptz NOT NULL
    );
    CREATE INDEX alert_assignments_alert ON alert_assignments (alert_id, at, id);
    """,
    # 7 (console): the charts' 1-minute continuous aggregate, on TimescaleDB only
    _MINUTE_AGGREGATE,
    # 8 (simulators): which devices a drill played on, so its data can be purged after it
    # (the scorecard in ``report`` stays); purged_at says it was.
    """
    ALTER TABLE drills ADD COLUMN device_id text NOT NULL DEFAULT '',
        ADD COLUMN devices text[] NOT NULL DEFAULT '{}',
        ADD COLUMN purged_at timestamptz;
    CREATE INDEX drills_site ON drills (site, started_at);
    """,
    # privacy, audit: elderly-care staff may log in (role care); one audit trail of config
    # changes, console user management and privacy actions (acknowledgements and silences
    # keep their own rows); each effective config seen, secrets removed, so the next start
    # can say what changed.
    """
    ALTER TABLE console_users DROP CONSTRAINT IF EXISTS console_users_role_check;
    ALTER TABLE console_users ADD CONSTRAINT console_users_role_check
        CHECK (role IN ('admin', 'duty_officer', 'fire_station', 'viewer', 'care'));
    CREATE TABLE audit_log (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL,
        actor text NOT NULL,
        category text NOT NULL CHECK (category IN ('config', 'user', 'privacy')),
        action text NOT NULL,
        subject text NOT NULL DEFAULT '',
        detail jsonb NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_log_at ON audit_log (at);
    CREATE TABLE config_versions (
        hash text PRIMARY KEY,
        config jsonb NOT NULL,
        first_seen timestamptz NOT NULL
    );
    """,
    # alerting: expiry counts from the last detection (an escalation step must not restart
    # its clock); a storm summary row lists the alerts it covers (its fallback re-renders
    # it); the storm check counts a receiver's recent rows; held rows wait for the window.
    """
    ALTER TABLE alerts ADD COLUMN last_detection_at timestamptz;
    UPDATE alerts SET last_detection_at = updated_at;
    CREATE INDEX alerts_live_last_detection ON alerts (coalesce(last_detection_at, updated_at))
        WHERE status IN ('open', 'escalated', 'suppressed');
    ALTER TABLE notifications ADD COLUMN covers bigint[];
    CREATE INDEX notifications_receiver_recent ON notifications (receiver, created_at);
    CREATE INDEX notifications_held ON notifications (receiver, next_attempt_at)
        WHERE status = 'held';
    """,
    # ingest (issue 7): a flooding device's quarantine; released_at NULL = still in force.
    # Ingest writes and re-reads it, so `shouwang devices release` and a restart agree.
    """
    CREATE TABLE device_quarantine (
        device_id text PRIMARY KEY,
        site text NOT NULL,
        quarantined_at timestamptz NOT NULL,
        reason text NOT NULL DEFAULT 'flooding',
        detail text NOT NULL DEFAULT '',
        dropped bigint NOT NULL DEFAULT 0,
        released_at timestamptz,
        released_by text NOT NULL DEFAULT ''
    );
    """,
    # detectors (issue 3): per-type IsolationForest models, versioned; ``model`` holds
    # numpy arrays (an .npz archive, loaded without pickle), ``params`` their JSON side.
    """
    CREATE TABLE anomaly_models (
        device_type text NOT NULL,
        version integer NOT NULL,
        trained_at timestamptz NOT NULL,
        rows integer NOT NULL,
        params jsonb NOT NULL,
        model bytea NOT NULL,
        PRIMARY KEY (device_type, version)
    );
    """,
    # simulators (drills): who plays a running drill (host and pid) and when it last said
    # so; a drill whose player stopped heart-beating is abandoned by any console's sweep.
    """
    ALTER TABLE drills ADD COLUMN player text NOT NULL DEFAULT '',
        ADD COLUMN heartbeat_at timestamptz;
    CREATE INDEX drills_running ON drills (id) WHERE finished_at IS NULL;
    """,
    # alerting (broadcast audio): the loudspeakers' WAV clips, named by the hash of voice
    # and text, so the console serves what any alerting worker rendered (no shared
    # directory); the audio_keep most recently used stay.
    """
    CREATE TABLE broadcast_audio (
        name text PRIMARY KEY,
        wav bytea NOT NULL,
        duration_s double precision NOT NULL,
        created_at timestamptz NOT NULL,
        used_at timestamptz NOT NULL
    );
    CREATE INDEX broadcast_audio_used ON broadcast_audio (used_at);
    """,
    # console (users disable): a disabled user cannot log in and is offered to nobody;
    # NULL = enabled. Who disabled them, and when, is in audit_log. The last login shows
    # `users list` which accounts nobody uses any more.
    """
    ALTER TABLE console_users ADD COLUMN disabled_at timestamptz,
        ADD COLUMN last_login_at timestamptz;
    """,
)

# Applied after the core tables when TimescaleDB can be used. Every name is qualified: the
# connection's search_path holds only the migrated schema, while the extension lives in one
# schema per database, shared by every schema migrated there.
_TIMESCALE = (
    sql.SQL("SELECT {ext}.create_hypertable({table}, 'ts', "
            "chunk_time_interval => interval '1 day', "
            "if_not_exists => true, migrate_data => true)"),
    sql.SQL("ALTER TABLE {readings} SET (timescaledb.compress, "
            "timescaledb.compress_segmentby = 'device_id, metric', "
            "timescaledb.compress_orderby = 'ts')"),
    sql.SQL("SELECT {ext}.add_compression_policy({table}, interval '7 days', "
            "if_not_exists => true)"),
    sql.SQL("SELECT {ext}.add_retention_policy({table}, interval '400 days', "
            "if_not_exists => true)"),
    sql.SQL(_MINUTE_AGGREGATE),  # needs the hypertable: a new schema's migration skipped it
)


async def has_timescaledb(conn: AsyncConnection[Any]) -> bool:  # Any: tuple rows
    """True when the extension can be used: available, and its loader preloaded.

    Creating it without the preloaded loader ends the session, so the loader's own
    setting is checked (shared_preload_libraries itself is hidden from non-superusers).
    """
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') "
        "AND EXISTS (SELECT 1 FROM pg_settings WHERE name = 'timescaledb.disable_load')")
    row = await cur.fetchone()
    return bool(row and row[0])


async def _make_hypertable(conn: AsyncConnection[Any], schema: str) -> None:  # Any: tuple rows
    # In public unless installed elsewhere before; never in the migrated schema, whose
    # DROP SCHEMA ... CASCADE (tests do it) would take the extension along.
    await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb WITH SCHEMA public")
    cur = await conn.execute(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'timescaledb'")
    row = await cur.fetchone()
    readings = sql.Identifier(schema, "readings")
    names = {"ext": sql.Identifier(row[0] if row else "public"), "readings": readings,
             "table": sql.SQL("{}::regclass").format(sql.Literal(readings.as_string(conn)))}
    for statement in _TIMESCALE:
        await conn.execute(statement.format(**names))


async def migrate(conn: AsyncConnection[Any], schema: str = "public") -> int:  # Any: tuple rows
    """Bring ``schema`` up to date; returns the number of migrations applied."""
    applied = 0
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        await conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                           "version integer PRIMARY KEY, applied_at timestamptz DEFAULT now())")
        cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
        row = await cur.fetchone()
        current = int(row[0]) if row else 0
        timescale = current == 0 and await has_timescaledb(conn)
        for version, script in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            await conn.execute(script.encode())
            await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied += 1
        if timescale:
            await _make_hypertable(conn, schema)
            log.info("readings is a TimescaleDB hypertable with compression and retention")
    if applied:
        log.info("applied %d migration(s) to schema %s", applied, schema)
    return applied

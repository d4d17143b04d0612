"""Per-type models from the database: train from ``readings``, store and load ``anomaly_models``.

``train_models`` reads each device type's recent messages (``read_history``: one row per
device and timestamp with every feature metric present; drill readings, and a device's
readings during its real hazard and health alerts, left out), fits a ``TypeForest`` off
the event loop and stores it as the type's next version.
``load_newest`` returns the newest usable version of each type; a row that does not
load (another catalogue, a damaged blob) is logged and skipped, never unpickled.
``ModelKeeper`` is the detect worker's side: newest models at start and every
``reload_s``, and retraining every ``interval_s`` when that is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from psycopg import AsyncConnection, sql

from config.settings import TrainingSettings
from detectors.anomaly.type_forest import TypeForest, feature_metrics
from detectors.engine import DetectorEngine
from shouwang.catalog import DeviceType
from shouwang.store import connect
from shouwang.store.db import StoreError

__all__ = ["ModelKeeper", "TrainingResult", "load_newest", "read_history", "train_models"]

log = logging.getLogger(__name__)

_TYPES = "SELECT DISTINCT device_type FROM anomaly_models"
_NEWEST = """
    SELECT version, params, model FROM anomaly_models WHERE device_type = %s
    ORDER BY version DESC LIMIT %s
"""
_FALLBACK = 3  # versions tried per type when the newest does not load
_LAST_TRAINED = "SELECT device_type, max(trained_at) FROM anomaly_models GROUP BY device_type"
_INSERT = """
    INSERT INTO anomaly_models (device_type, version, trained_at, rows, params, model)
    SELECT %(type)s, coalesce(max(version), 0) + 1, %(at)s, %(rows)s, %(params)s, %(model)s
    FROM anomaly_models WHERE device_type = %(type)s
    RETURNING version
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingResult:
    """What one training run did for one device type."""

    device_type: DeviceType
    rows: int
    version: int | None     # None: too few rows, nothing stored
    threshold: float | None = None


def _history_query(metrics: tuple[str, ...]) -> sql.Composed:
    columns = sql.SQL(", ").join(
        sql.SQL("max(r.value) FILTER (WHERE r.metric = {})").format(sql.Literal(m))
        for m in metrics)
    # A real leak or a faulty sensor is not normal: a device's readings from alert_margin_s
    # before such an alert opened until it resolved (or now, still live) are left out.
    # Anomaly alerts are not: leaving out what the model flagged would teach it only its
    # own past judgements, and a change it rightly learns (a new tenant) would stay odd.
    # One multirange per device: a binary search per reading, where NOT EXISTS became a
    # hash anti join that tried every alert of the device for every reading.
    return sql.SQL("""
        WITH alerted AS (
            SELECT a.device_id, range_agg(tstzrange(
                       a.opened_at - make_interval(secs => %(margin)s),
                       coalesce(a.resolved_at, %(now)s), '[]')) AS periods
            FROM alerts a JOIN devices d ON d.id = a.device_id
            WHERE d.type = %(type)s AND NOT a.drill AND a.kind IN ('hazard', 'health')
              AND coalesce(a.resolved_at, %(now)s) >= %(since)s
              AND a.opened_at - make_interval(secs => %(margin)s)
                  <= coalesce(a.resolved_at, %(now)s)
            GROUP BY a.device_id)
        SELECT extract(epoch FROM r.ts)::float8, {columns}
        FROM readings r JOIN devices d ON d.id = r.device_id
        LEFT JOIN alerted x ON x.device_id = r.device_id
        WHERE d.type = %(type)s AND r.ts >= %(since)s AND NOT r.drill
          AND r.metric = ANY(%(metrics)s)
          AND NOT coalesce(x.periods @> r.ts, false)
        GROUP BY r.device_id, r.ts
        HAVING count(DISTINCT r.metric) = %(count)s
        ORDER BY r.ts DESC
        LIMIT %(limit)s
    """).format(columns=columns)


async def read_history(conn: AsyncConnection[Any], device_type: DeviceType,
                       config: TrainingSettings, now: float) -> np.ndarray:
    """A type's training rows, newest first: epoch seconds, then ``feature_metrics``.

    Shape ``(n, 1 + len(feature_metrics(device_type)))``; at most ``config.max_rows``.
    """
    metrics = feature_metrics(device_type)
    try:
        async with conn.transaction(), conn.cursor() as cur:
            await cur.execute(_history_query(metrics), {
                "type": device_type.value, "metrics": list(metrics),
                "since": datetime.fromtimestamp(now - config.history_s, UTC),
                "now": datetime.fromtimestamp(now, UTC),
                "margin": config.alert_margin_s,
                "count": len(metrics), "limit": config.max_rows})
            rows = await cur.fetchall()
    except psycopg.Error as err:
        raise StoreError(f"reading {device_type.value} history failed: {err}") from err
    return np.asarray(rows, dtype=float).reshape(len(rows), 1 + len(metrics))


async def train_models(conn: AsyncConnection[Any], config: TrainingSettings, now: float,
                       types: Iterable[DeviceType] | None = None) -> list[TrainingResult]:
    """Train and store a new version for each type with enough history."""
    results: list[TrainingResult] = []
    for device_type in types if types is not None else DeviceType:
        if not feature_metrics(device_type):
            continue
        rows = await read_history(conn, device_type, config, now)
        if len(rows) < config.min_rows:
            log.info("not training device_type=%s: %d messages of history, %d needed",
                     device_type.value, len(rows), config.min_rows)
            results.append(TrainingResult(device_type=device_type, rows=len(rows),
                                          version=None))
            continue
        model = await asyncio.to_thread(
            TypeForest.fit, device_type, rows[:, 1:], rows[:, 0], version=0,
            n_estimators=config.n_estimators, max_samples=config.max_samples,
            quantile=config.quantile, margin=config.margin,
            utc_offset_h=config.utc_offset_h, seed=config.seed)
        version = await _store(conn, model, len(rows), now)
        log.info("trained device_type=%s version=%d rows=%d threshold=%.3f",
                 device_type.value, version, len(rows), model.threshold)
        results.append(TrainingResult(device_type=device_type, rows=len(rows),
                                      version=version, threshold=model.threshold))
    return results


async def _store(conn: AsyncConnection[Any], model: TypeForest, rows: int, now: float) -> int:
    # The row's version column is the truth; the JSON side holds the rest.
    params = {k: v for k, v in model.params().items() if k != "version"}
    try:
        async with conn.transaction(), conn.cursor() as cur:
            # One writer per type at a time, so two trainers cannot take one version.
            await cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                              (f"shouwang.anomaly_models.{model.device_type.value}",))
            await cur.execute(_INSERT, {
                "type": model.device_type.value, "at": datetime.fromtimestamp(now, UTC),
                "rows": rows, "params": json.dumps(params), "model": model.to_bytes()})
            found = await cur.fetchone()
    except psycopg.Error as err:
        raise StoreError(f"storing the {model.device_type.value} model failed: {err}") from err
    assert found is not None
    return int(found[0])


async def load_newest(conn: AsyncConnection[Any]) -> list[TypeForest]:
    """The newest loadable model of each device type (an unusable newest version falls
    back to the one before, up to three)."""
    models = []
    try:
        async with conn.transaction(), conn.cursor() as cur:
            await cur.execute(_TYPES)
            types = [device_type for (device_type,) in await cur.fetchall()]
            for device_type in sorted(types):
                await cur.execute(_NEWEST, (device_type, _FALLBACK))
                for version, params, blob in await cur.fetchall():
                    try:
                        stored = params if isinstance(params, dict) else json.loads(params)
                        models.append(TypeForest.from_bytes(
                            bytes(blob), {**stored, "device_type": device_type,
                                          "version": version}))
                        break
                    except ValueError as err:
                        log.warning("anomaly model device_type=%s version=%s unusable, "
                                    "skipped: %s", device_type, version, err)
    except psycopg.Error as err:
        raise StoreError(f"loading anomaly models failed: {err}") from err
    return models


async def _last_trained(conn: AsyncConnection[Any]) -> dict[str, float]:
    try:
        async with conn.transaction(), conn.cursor() as cur:
            await cur.execute(_LAST_TRAINED)
            rows = await cur.fetchall()
    except psycopg.Error as err:
        raise StoreError(f"reading model versions failed: {err}") from err
    return {device_type: at.timestamp() for device_type, at in rows}


class ModelKeeper:
    """Keeps a detect worker's per-type models current; trains on schedule if configured.

    Parameters
    ----------
    engine
        Receives every newer model (``install_models``).
    config
        The ``training`` section.
    dsn, schema
        The database with ``readings`` and ``anomaly_models``.
    clock
        Schedules and ``trained_at``; tests inject their own.
    poll_s
        How often the clock is looked at (the schedule's resolution).
    """

    def __init__(self, engine: DetectorEngine, config: TrainingSettings, dsn: str,
                 schema: str, *, clock: Callable[[], float] = time.time,
                 poll_s: float = 1.0) -> None:
        self._engine = engine
        self._config = config
        self._dsn = dsn
        self._schema = schema
        self._clock = clock
        self._poll_s = poll_s
        self._failing = False

    async def load_once(self) -> None:
        """Install the newest models now (at start, before the first reading is scored);
        a database failure is logged and left to ``run``'s retries."""
        try:
            conn = await connect(self._dsn, self._schema)
            try:
                await self._load(conn)
            finally:
                await conn.close()
        except (StoreError, psycopg.Error, OSError) as err:
            log.warning("anomaly models not loaded at start (retrying later): %s", err)

    async def run(self, stop: asyncio.Event) -> None:
        """Reload every ``reload_s`` (the first after ``reload_s``: ``load_once`` did the
        start) and train every ``interval_s`` when set."""
        config = self._config
        conn: AsyncConnection[Any] | None = None
        next_train = self._clock()
        next_load = next_train + config.reload_s
        try:
            while not stop.is_set():
                now = self._clock()
                try:
                    if conn is None:
                        conn = await connect(self._dsn, self._schema)
                    if config.interval_s and now >= next_train:
                        next_train = now + config.interval_s
                        await self._train_due(conn, now)
                        next_load = now  # pick up what was just trained
                    if now >= next_load:
                        next_load = now + config.reload_s
                        await self._load(conn)
                    self._failing = False
                except (StoreError, psycopg.Error, OSError) as err:
                    if not self._failing:
                        log.warning("anomaly models not refreshed (retrying): %s", err)
                    self._failing = True
                    if conn is not None:
                        await conn.close()
                        conn = None
                    next_load = now + min(config.reload_s, 30.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._poll_s)
        finally:
            if conn is not None:
                await conn.close()

    async def _load(self, conn: AsyncConnection[Any]) -> None:
        installed = self._engine.model_versions()
        newer = [m for m in await load_newest(conn)
                 if installed.get(m.device_type.value) != m.version]
        if newer:
            self._engine.install_models(newer)
            log.info("anomaly models installed: %s",
                     ", ".join(f"{m.device_type.value} v{m.version}" for m in newer))

    async def _train_due(self, conn: AsyncConnection[Any], now: float) -> None:
        # Several workers share the schedule: a type trained recently by any is skipped.
        last = await _last_trained(conn)
        due = [t for t in DeviceType
               if now - last.get(t.value, -float("inf")) >= self._config.interval_s / 2]
        if due:
            await train_models(conn, self._config, now, due)

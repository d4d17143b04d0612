"""Per-type models trained from PostgreSQL history, versioned, loaded and retrained."""

from __future__ import annotations

import asyncio
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from config.settings import DeviceConfig, Settings, SiteConfig, TrainingSettings
from detectors import DetectorService
from detectors.training import load_newest, read_history, train_models
from detectors.typed import MODEL_HAZARD
from shouwang.bus import MemoryBus
from shouwang.catalog import DeviceType
from shouwang.codec import decode_detection, encode_readings
from shouwang.models import Detection, Reading
from shouwang.store import connect
from shouwang.store.readings import ReadingWriter
from shouwang.store.registry import sync_registry
from simulators.devices import DeviceSignal

pytestmark = pytest.mark.integration

EPOCH = 1_764_086_400.0 - 8 * 3600.0  # midnight in UTC+8
NOW = EPOCH + 2 * 86400.0
STEP_S = 120.0
HISTORY = [f"g{i}" for i in range(5)]
ROOT = Path(__file__).resolve().parents[2]


def _settings(**training: object) -> Settings:
    return Settings.model_validate({
        "sites": [SiteConfig(id="s1", name="测试小区")],
        "devices": [DeviceConfig(id=d, type=DeviceType.GAS, site="s1", building="1号楼")
                    for d in [*HISTORY, "live"]],
        "detectors": {"training": {"min_rows": 100, **training}},
    })


def _history() -> list[Reading]:
    """A day of simulated kitchens (lel, co, battery, rssi), plus a drill that must not
    be learnt."""
    out = []
    for device_id in HISTORY:
        signal = DeviceSignal(_settings().device_map()[device_id], seed=4)
        for i in range(int(86400 / STEP_S)):
            ts = EPOCH + 86400.0 + i * STEP_S
            for metric, value in signal.sample(t_s=i * STEP_S, epoch_s=ts).items():
                out.append(Reading(ts=ts, device_id=device_id, site="s1", metric=metric,
                                   value=float(value), received_at=ts))
    for i in range(50):  # a drill leak: 40 %LEL, flagged as a drill
        ts = EPOCH + 86400.0 + 30.0 + i * STEP_S
        out += [Reading(ts=ts, device_id="g0", site="s1", metric=m, value=v,
                        received_at=ts, drill=True) for m, v in (("lel", 40.0), ("co", 1.0))]
    return out


async def _prepare(pg_dsn: str, schema: str) -> None:
    settings = _settings()
    conn = await connect(pg_dsn, schema)
    try:
        await sync_registry(conn, settings.site_map().values(), settings.device_map().values())
        await ReadingWriter(conn).write(_history())
        await conn.commit()
    finally:
        await conn.close()


async def _versions(pg_dsn: str, schema: str) -> list[tuple[str, int, int]]:
    conn = await connect(pg_dsn, schema)
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT device_type, version, rows FROM anomaly_models "
                              "ORDER BY device_type, version")
            return [tuple(r) for r in await cur.fetchall()]  # type: ignore[misc]
    finally:
        await conn.close()


async def test_training_stores_versions_and_the_newest_usable_one_loads(
        pg_dsn: str, db_schema: str) -> None:
    await _prepare(pg_dsn, db_schema)
    conn = await connect(pg_dsn, db_schema)
    try:
        config = TrainingSettings(min_rows=100, n_estimators=50)
        first = await train_models(conn, config, NOW)
        second = await train_models(conn, config, NOW + 60.0, [DeviceType.GAS])
        models = await load_newest(conn)

        # A tampered newest row: a pickle that would run code if it were unpickled.
        class Evil:
            def __reduce__(self) -> tuple[object, ...]:
                return (os.system, ("touch /tmp/shouwang-pwned",))

        async with conn.cursor() as cur:
            await cur.execute(
                "INSERT INTO anomaly_models (device_type, version, trained_at, rows, params, "
                "model) SELECT device_type, 9, trained_at, rows, params, %s FROM anomaly_models "
                "WHERE version = 2", (pickle.dumps(Evil()),))
        await conn.commit()
        after_tamper = await load_newest(conn)
    finally:
        await conn.close()

    gas = next(r for r in first if r.device_type is DeviceType.GAS)
    # 720 messages a device, every one with lel and co; the drill rows left out.
    assert (gas.rows, gas.version) == (5 * 720, 1)
    assert all(r.version is None for r in first if r.device_type is not DeviceType.GAS)
    assert [(r.device_type, r.version) for r in second] == [(DeviceType.GAS, 2)]
    assert await _versions(pg_dsn, db_schema) == [("gas", 1, 3600), ("gas", 2, 3600),
                                                  ("gas", 9, 3600)]
    assert [(m.device_type, m.version) for m in models] == [(DeviceType.GAS, 2)]
    assert [(m.device_type, m.version) for m in after_tamper] == [(DeviceType.GAS, 2)]
    assert not Path("/tmp/shouwang-pwned").exists()
    # The model learnt clean air, not the drill's 40 %LEL.
    lel_centre = models[0].center[0]
    assert lel_centre < 2.0


MARGIN_S = 300.0
START = NOW - 3 * 3600.0


def _at(device: int, minute: int) -> float:
    """When device ``g{device}`` sent its ``minute``-th message (each device a few seconds
    apart, so a training row's timestamp names its device)."""
    return START + 60.0 * minute + device


async def test_training_leaves_out_real_hazard_and_health_alerts_only(
        pg_dsn: str, db_schema: str) -> None:
    settings = _settings()
    readings = []
    for device in range(4):
        for minute in range(120):
            ts = _at(device, minute)
            leak = device == 0 and 30 <= minute <= 40
            readings += [Reading(ts=ts, device_id=f"g{device}", site="s1", metric=m,
                                 value=v, received_at=ts)
                         for m, v in (("lel", 40.0 if leak else 0.5), ("co", 1.0))]
    # (device, kind, opened, resolved, drill); minutes, resolved None = still live.
    alerts = [(0, "hazard", 30, 40, False),    # a real leak: left out, with the margin
              (0, "hazard", 60, 70, True),     # a drill's alert: its readings kept
              (1, "anomaly", 30, 40, False),   # the model's own finding: kept
              (2, "health", 100, None, False)]  # a faulty sensor, still live: left out
    conn = await connect(pg_dsn, db_schema)
    try:
        await sync_registry(conn, settings.site_map().values(), settings.device_map().values())
        await ReadingWriter(conn).write(readings)
        async with conn.cursor() as cur:
            for device, kind, opened, resolved, drill in alerts:
                await cur.execute(
                    "INSERT INTO alerts (site, device_id, hazard, kind, severity, status, "
                    "opened_at, resolved_at, drill) VALUES ('s1', %s, %s, %s, 3, %s, "
                    "to_timestamp(%s), to_timestamp(%s), %s)",
                    (f"g{device}", "gas" if kind == "hazard" else kind, kind,
                     "open" if resolved is None else "resolved", _at(device, opened),
                     None if resolved is None else _at(device, resolved), drill))
        await conn.commit()
        config = TrainingSettings(min_rows=100, n_estimators=20, alert_margin_s=MARGIN_S)
        history = await read_history(conn, DeviceType.GAS, config, NOW)
        [trained] = await train_models(conn, config, NOW, [DeviceType.GAS])
    finally:
        await conn.close()

    left_out = ({_at(0, m) for m in range(25, 41)}       # 5 min before opening to resolving
                | {_at(2, m) for m in range(95, 120)})  # 5 min before opening to now
    expected = {_at(d, m) for d in range(4) for m in range(120)} - left_out
    assert history.shape == (len(expected), 3)
    assert set(history[:, 0].tolist()) == expected
    assert history[:, 1].max() == 0.5  # no leak reading learnt
    assert trained.rows == len(expected) == 4 * 120 - 16 - 25


async def _detections(bus: MemoryBus, want: int, timeout_s: float) -> list[Detection]:
    found: list[Detection] = []
    async with bus.consumer(["detections"], "test-reader") as reader:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline and len(found) < want:
            batch = await reader.batch(100, 0.2)
            await reader.commit(batch)
            found += [decode_detection(m.value) for m in batch]
    return found


def _odd_night(start: float) -> list[tuple[str, bytes]]:
    """3 a.m.: clean air but 25 ppm CO for five messages, then normal again."""
    items = []
    for i in range(17):
        ts = start + 60.0 * i
        co = 25.0 if i < 5 else 1.2
        items.append(("live", encode_readings([
            Reading(ts=ts, device_id="live", site="s1", metric="lel", value=0.5,
                    received_at=ts),
            Reading(ts=ts, device_id="live", site="s1", metric="co", value=co,
                    received_at=ts)])))
    return items


async def _wait_for_versions(pg_dsn: str, schema: str, count: int,
                             timeout_s: float = 60.0) -> list[tuple[str, int, int]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    found = await _versions(pg_dsn, schema)
    while len(found) < count and loop.time() < deadline:
        await asyncio.sleep(0.1)
        found = await _versions(pg_dsn, schema)
    return found


async def test_the_worker_retrains_on_its_schedule_and_installs_what_it_trained(
        pg_dsn: str, db_schema: str) -> None:
    await _prepare(pg_dsn, db_schema)
    settings = _settings(interval_s=3600.0, n_estimators=50)
    clock = [NOW]
    stop = asyncio.Event()
    async with MemoryBus() as bus:
        service = DetectorService(settings, bus, clock=lambda: clock[0], poll_s=0.1,
                                  dsn=pg_dsn, schema=db_schema)
        worker = asyncio.create_task(service.run(stop), name="test.detector-worker")
        try:
            # No model yet: the worker trains one at start ...
            at_start = await _wait_for_versions(pg_dsn, db_schema, 1)
            # ... a second worker starting soon after does not train its own ...
            clock[0] = NOW + 1000.0
            second_stop = asyncio.Event()
            other = settings.model_copy(update={"detectors": settings.detectors.model_copy(
                update={"group": "detectors-2"})})  # the in-process bus: one per group
            second = asyncio.create_task(DetectorService(
                other, bus, clock=lambda: clock[0], poll_s=0.1, dsn=pg_dsn,
                schema=db_schema).run(second_stop), name="test.detector-worker-2")
            await asyncio.sleep(2.0)
            second_stop.set()
            await asyncio.wait_for(second, 30.0)
            too_soon = await _versions(pg_dsn, db_schema)
            # ... and again once the interval has passed on the worker's clock.
            clock[0] = NOW + 3601.0
            retrained = await _wait_for_versions(pg_dsn, db_schema, 2)
            # What it trained is what it scores with: the odd night opens an episode.
            await bus.publish("readings", _odd_night(NOW + 3 * 3600.0))
            found = await _detections(bus, 2, timeout_s=60.0)
        finally:
            stop.set()
            await asyncio.wait_for(worker, 30.0)

    assert at_start == too_soon == [("gas", 1, 3600)]
    assert [v for _, v, _ in retrained] == [1, 2]
    assert [(d.device_id, d.firing) for d in found if d.hazard == MODEL_HAZARD] == [
        ("live", True), ("live", False)]


async def test_a_model_in_the_database_scores_the_stream_from_the_first_batch(
        pg_dsn: str, db_schema: str) -> None:
    await _prepare(pg_dsn, db_schema)
    conn = await connect(pg_dsn, db_schema)
    try:
        await train_models(conn, TrainingSettings(min_rows=100, n_estimators=50), NOW,
                           [DeviceType.GAS])
        await conn.commit()
    finally:
        await conn.close()
    stop = asyncio.Event()
    async with MemoryBus() as bus:
        await bus.publish("readings", _odd_night(NOW + 3 * 3600.0))
        worker = asyncio.create_task(DetectorService(
            _settings(), bus, clock=lambda: NOW, poll_s=0.1, dsn=pg_dsn,
            schema=db_schema).run(stop), name="test.detector-worker")
        try:
            found = await _detections(bus, 2, timeout_s=60.0)
        finally:
            stop.set()
            await asyncio.wait_for(worker, 30.0)

    episode = [d for d in found if d.hazard == MODEL_HAZARD]
    assert [(d.device_id, d.firing, d.metric) for d in episode] == [
        ("live", True, "co"), ("live", False, "co")]
    assert "gas 模型 v1" in episode[0].message
    assert np.isclose(episode[0].reading_ts, NOW + 3 * 3600.0 + 120.0)  # the third message


def test_the_train_command_trains_from_the_configured_database(
        pg_dsn: str, db_schema: str, tmp_path: Path) -> None:
    asyncio.run(_prepare(pg_dsn, db_schema))
    settings = _settings()
    config = tmp_path / "shouwang.yaml"
    config.write_text(yaml.safe_dump({
        "sites": [s.model_dump(mode="json") for s in settings.sites],
        "devices": [d.model_dump(mode="json") for d in settings.devices],
        "detectors": {"training": {"min_rows": 100, "n_estimators": 30,
                                   "history_s": 400 * 86400.0}},
    }, allow_unicode=True), encoding="utf-8")
    env = {**os.environ, "SHOUWANG_DATABASE__DSN": pg_dsn,
           "SHOUWANG_DATABASE__SCHEMA_NAME": db_schema}

    done = subprocess.run(
        [sys.executable, "-m", "shouwang.cli", "train", "--config", str(config),
         "--type", "gas", "--type", "water"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"gas: 3600 messages, version 1 \(threshold 0\.\d{3}\)", lines[0])
    assert lines[1:] == ["water: 0 messages, too few, not trained"]
    assert asyncio.run(_versions(pg_dsn, db_schema)) == [("gas", 1, 3600)]

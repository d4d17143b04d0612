"""A small community with two residents' wearables and a gas detector, for the privacy tests.

Health readings lie 40 days and 1 day in the past (retention is 30 days); each kind of
row that can hold a resident's data (alerts, notes, messages, raw rejects, detector
state) is seeded, with the resident's name in the free texts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from config.settings import Settings, load
from shouwang.models import AlertStatus, Detection, DetectionKind, Severity
from shouwang.store.alerts import transition, upsert_live
from shouwang.store.registry import sync_registry

__all__ = ["DAY", "NAME_A", "NOW", "Seeded", "privacy_settings", "seed"]

NOW = 1_764_124_800.0  # 2025-11-26T02:40:00Z
DAY = 86_400.0
NAME_A = "王奶奶"


def privacy_settings(**overrides: Any) -> Settings:  # Any: nested config values
    data: dict[str, Any] = {  # Any: raw config, as YAML would give it
        "sites": [{"id": "s1", "name": "幸福里小区"}],
        "devices": [
            {"id": "wear-a", "type": "wearable", "site": "s1", "name": f"{NAME_A}的手环",
             "building": "1号楼", "unit": "1单元", "floor": "3", "room": "302"},
            {"id": "wear-b", "type": "wearable", "site": "s1", "name": "李爷爷的手环",
             "building": "2号楼", "room": "501"},
            {"id": "gas-1", "type": "gas", "site": "s1", "name": "厨房燃气", "building": "1号楼"},
        ],
        "alerting": {
            "receivers": [{"name": "family-sms", "channel": "sms",
                           "urls": ["json://127.0.0.1:9/sms"]}],
            "groups": [{"name": "family", "recipients": [
                {"name": "family-of-a", "receivers": ["family-sms"], "devices": ["wear-a"]}]}],
        },
        "residents": [
            {"id": "r-a", "name": NAME_A, "site": "s1", "building": "1号楼", "room": "302",
             "devices": ["wear-a"], "family_contacts": ["family-of-a"]},
            {"id": "r-b", "name": "李爷爷", "site": "s1", "devices": ["wear-b"]},
        ],
        "privacy": {"health_retention_days": 30, "purge_batch": 2},
    }
    data.update(overrides)
    return load(None, **data)


@dataclass(frozen=True, slots=True, kw_only=True)
class Seeded:
    heart_alert: int
    sos_alert: int
    gas_alert: int
    other_alert: int


async def _reading(db: AsyncConnection[Any], device: str, metric: str, value: float,
                   ts: float) -> None:
    await db.execute("INSERT INTO readings (ts, device_id, metric, value, seq, received_at) "
                     "VALUES (to_timestamp(%s), %s, %s, %s, 1, to_timestamp(%s))",
                     (ts, device, metric, value, ts))


async def _alert(db: AsyncConnection[Any], device: str, hazard: str, value: float,
                 message: str, severity: Severity = Severity.ORANGE) -> int:
    detection = Detection(ts=NOW - 600, device_id=device, site="s1", hazard=hazard,
                          kind=DetectionKind.HAZARD, severity=severity, firing=True,
                          metric=hazard, value=value, level=1, message=message)
    async with db.transaction(), db.cursor() as cur:
        upserted = await upsert_live(cur, detection, NOW - 600)
    return upserted[0].id


async def seed(db: AsyncConnection[Any], settings: Settings) -> Seeded:
    """Registry, readings, alerts with history and messages; ``db`` in autocommit."""
    await sync_registry(db, settings.site_map().values(), settings.device_map().values())
    for ts in (NOW - 40 * DAY, NOW - 40 * DAY + 60, NOW - 40 * DAY + 120):
        await _reading(db, "wear-a", "heart_rate", 72.0, ts)
        await _reading(db, "wear-b", "heart_rate", 66.0, ts)
    for ts in (NOW - DAY, NOW - DAY + 60, NOW - 600):
        await _reading(db, "wear-a", "heart_rate", 160.0, ts)
        await _reading(db, "wear-b", "heart_rate", 70.0, ts)
    await _reading(db, "wear-a", "spo2", 96.0, NOW - 40 * DAY)
    await _reading(db, "wear-a", "sos", 1.0, NOW - 40 * DAY)
    await _reading(db, "wear-a", "battery", 80.0, NOW - 40 * DAY)
    await _reading(db, "gas-1", "lel", 3.0, NOW - 40 * DAY)
    heart = await _alert(db, "wear-a", "heart_rate_high", 160.0, f"{NAME_A} 心率 160 bpm")
    sos = await _alert(db, "wear-a", "sos", 1.0, "紧急呼叫：佩戴者按下了 SOS 键", Severity.RED)
    gas = await _alert(db, "gas-1", "gas", 55.0, "可燃气体 55 %LEL", Severity.RED)
    other = await _alert(db, "wear-b", "heart_rate_low", 38.0, "李爷爷 心率 38 bpm")
    await transition(db, heart, AlertStatus.ACKNOWLEDGED, actor="王值班", source="console",
                     note=f"已电话联系{NAME_A}", now=NOW - 300)
    await db.execute(
        "INSERT INTO notifications (alert_id, step, receiver, channel, body, status, attempts, "
        "created_at, next_attempt_at) VALUES "
        "(%s, 0, 'family-sms', 'sms', %s, 'sent', 1, to_timestamp(%s), to_timestamp(%s)), "
        "(%s, 0, 'family-sms', 'sms', '【守望】紧急呼叫 SOS 1号楼302', 'sent', 1, "
        " to_timestamp(%s), to_timestamp(%s))",
        (heart, f"【守望】{NAME_A} 心率 160 bpm", NOW - 590, NOW - 590, sos, NOW - 590,
         NOW - 590))
    await db.execute("INSERT INTO detector_state (device_id, detector, state, updated_at) "
                     "VALUES ('wear-a', 'anomaly', '\\x00', to_timestamp(%s)), "
                     "('wear-b', 'anomaly', '\\x00', to_timestamp(%s))", (NOW, NOW))
    await db.execute("INSERT INTO rejects (received_at, topic, device_id, reason, payload) "
                     "VALUES (to_timestamp(%s), 'shouwang/v1/s1/wear-a/telemetry', 'wear-a', "
                     "'out_of_range', %s)", (NOW - 100, b'{"values": {"heart_rate": 999}}'))
    return Seeded(heart_alert=heart, sos_alert=sos, gas_alert=gas, other_alert=other)

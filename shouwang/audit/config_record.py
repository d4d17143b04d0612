"""The effective configuration at each start, and what changed since the last one.

The configuration is flattened to ``dotted.key -> value`` with secrets removed (secret
fields, passwords in URLs, URL paths and queries that may carry tokens) and personal
data left out (residents' and their wearables' names), hashed, and compared with the
last version recorded: a change becomes one ``audit_log`` row listing the keys that
changed, with their old and new values. Rotating a secret is therefore not visible;
setting or removing one is.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit

import orjson
from psycopg import AsyncConnection

from config.settings import Settings
from shouwang.audit.log import AuditCategory, record

__all__ = ["MAX_CHANGES", "config_changes", "flat_config", "record_config"]

MAX_CHANGES = 200  # listed per audit row; the count says how many there were in all
HIDDEN = "**********"
_LOCK_ID = 0x5348_4155  # "SHAU": one start at a time compares with the last version
_SECRET_WORDS = ("password", "secret", "token", "dsn", "credential")
# A list of these is keyed by the item's id or name, so inserting one item is one change.
_ITEM_KEYS = ("id", "name")


def _personal(list_key: str, item: dict[str, Any]) -> frozenset[str]:  # Any: JSON values
    """Keys dropped from the record: residents can ask to be forgotten, and a wearable's
    name is usually its wearer's ("王奶奶的手环")."""
    if list_key == "residents" or (list_key == "devices" and item.get("type") == "wearable"):
        return frozenset({"name"})
    return frozenset()


def _url(value: str) -> str:
    """Scheme and host only: user info, paths and queries may hold credentials or tokens.

    >>> _url("json://user:pw@127.0.0.1:8025/sms?token=abc")
    'json://127.0.0.1:8025/…'
    >>> _url("dingtalk://secrettoken/")
    'dingtalk://…'
    """
    parts = urlsplit(value)
    netloc = parts.netloc.rpartition("@")[2]
    if parts.scheme in ("http", "https", "json", "jsons", "xml", "xmls", "form", "forms",
                        "mqtt", "mqtts", "postgresql", "postgres", "mailto", "mailtos"):
        return f"{parts.scheme}://{netloc}/…"
    return f"{parts.scheme}://…"


def _clean(key: str, value: Any) -> Any:  # Any: a JSON value
    if value is None or isinstance(value, bool | int | float):
        return value
    if any(word in key.lower() for word in _SECRET_WORDS):
        return HIDDEN
    if isinstance(value, str) and "://" in value:
        return _url(value)
    return value


def _flatten(prefix: str, parent: str, value: Any, out: dict[str, Any]) -> None:  # Any: JSON
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else key, key, item, out)
        return
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for index, item in enumerate(value):
            label = next((str(item[k]) for k in _ITEM_KEYS if k in item), str(index))
            hidden = _personal(parent, item)
            _flatten(f"{prefix}[{label}]", parent,
                     {k: v for k, v in item.items() if k not in hidden}, out)
        return
    if isinstance(value, list):
        out[prefix] = [_clean(parent, v) for v in value]
        return
    out[prefix] = _clean(parent, value)


def flat_config(settings: Settings) -> dict[str, Any]:  # Any: JSON values
    """``dotted.key -> value`` of every setting, secret-free.

    >>> flat = flat_config(Settings(mqtt={"password": "hunter2hunter2"}))
    >>> flat["mqtt.password"], flat["privacy.health_retention_days"]
    ('**********', 30)
    """
    out: dict[str, Any] = {}  # Any: JSON values
    _flatten("", "", settings.model_dump(mode="json"), out)
    return out


def config_changes(old: dict[str, Any],  # Any: JSON values
                   new: dict[str, Any]) -> list[dict[str, Any]]:
    """The keys added, removed or changed, in key order.

    >>> config_changes({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4})
    [{'key': 'b', 'old': 2, 'new': 3}, {'key': 'c', 'old': None, 'new': 4}]
    """
    changes = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before != after or (key in old) != (key in new):
            changes.append({"key": key, "old": before, "new": after})
    return changes


def _digest(flat: dict[str, Any]) -> str:  # Any: JSON values
    return hashlib.sha256(orjson.dumps(flat, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def record_config(conn: AsyncConnection[Any], settings: Settings, *,  # Any: tuple rows
                        actor: str, now: float, command: str = "") -> int | None:
    """Record the effective config when it differs from the last recorded one.

    Returns the new audit row's id, or None when nothing changed.
    """
    flat = flat_config(settings)
    digest = _digest(flat)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        cur = await conn.execute(
            "SELECT detail->>'hash' FROM audit_log WHERE category = 'config' "
            "ORDER BY at DESC, id DESC LIMIT 1")
        row = await cur.fetchone()
        last = None if row is None else row[0]
        if last == digest:
            return None
        previous: dict[str, Any] | None = None  # Any: JSON values
        if last is not None:
            cur = await conn.execute("SELECT config FROM config_versions WHERE hash = %s",
                                     (last,))
            found = await cur.fetchone()
            previous = None if found is None else found[0]
        await conn.execute(
            "INSERT INTO config_versions (hash, config, first_seen) "
            "VALUES (%s, %s::jsonb, to_timestamp(%s)) ON CONFLICT (hash) DO NOTHING",
            (digest, orjson.dumps(flat).decode(), now))
        changes = [] if previous is None else config_changes(previous, flat)
        return await record(
            conn, category=AuditCategory.CONFIG,
            action="config_first_seen" if previous is None else "config_changed",
            actor=actor, now=now, subject=digest[:12],
            detail={"hash": digest, "previous": last, "command": command,
                    "changed": len(changes), "changes": changes[:MAX_CHANGES]})

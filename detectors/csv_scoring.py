"""Offline scoring of a ``timestamp,value`` CSV with a streaming anomaly detector.

Strictly streaming: each row is scored before it is learnt, and only rows before it have
been learnt, so row *i*'s score depends on rows 0..i alone (truncating the file after row
*k* leaves the first *k* scores unchanged).
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detectors.anomaly.base import AnomalyDetector

__all__ = ["parse_timestamp", "score_csv", "score_stream"]

log = logging.getLogger(__name__)


def parse_timestamp(text: str) -> float | None:
    """Epoch seconds from epoch seconds/ms or ISO 8601 text (naive means UTC); None if unreadable.

    >>> parse_timestamp("2014-04-01 00:05:00")
    1396310700.0
    >>> parse_timestamp("1396310700000")
    1396310700.0
    """
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        # Epoch milliseconds are > 1e11 for any date after 1973.
        return number / 1000.0 if number > 1e11 else number
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def _score_then_learn(detector: AnomalyDetector, x: dict[str, Any]) -> float:
    score = detector.score_one(x)
    detector.learn_one(x)
    return min(max(score, 0.0), 1.0) if math.isfinite(score) else 1.0


def score_stream(detector: AnomalyDetector, rows: Iterable[dict[str, Any]]) -> Iterator[float]:
    """Score each row, then learn it; yields one score in [0, 1] per row."""
    for x in rows:
        yield _score_then_learn(detector, x)


def _features(row: dict[str, str]) -> dict[str, Any]:
    x: dict[str, Any] = {}
    ts = parse_timestamp(row.get("timestamp") or "")
    if ts is not None:
        x["ts"] = ts
    try:
        x["value"] = float(row.get("value") or "nan")
    except ValueError:
        x["value"] = math.nan  # detectors treat a non-finite value as missing
    return x


def score_csv(detector: AnomalyDetector, source: Path, target: Path) -> int:
    """Copy ``source`` to ``target`` with an ``anomaly_score`` column; returns the row count."""
    with source.open(newline="") as fin, target.open("w", newline="") as fout:
        reader = csv.DictReader(fin)
        fields = list(reader.fieldnames or [])
        if "timestamp" not in fields or "value" not in fields:
            raise ValueError(f"{source}: needs the columns timestamp,value (got {fields})")
        keep = [f for f in fields if f != "anomaly_score"]
        writer = csv.writer(fout, lineterminator="\n")
        writer.writerow([*keep, "anomaly_score"])
        count = 0
        for row in reader:
            score = _score_then_learn(detector, _features(row))
            writer.writerow([*(row[f] for f in keep), f"{score:.6f}"])
            count += 1
    log.info("scored rows=%d source=%s target=%s", count, source, target)
    return count

"""Sensor health: stuck values, out of physical range, battery, lost or repeated messages, clock.

These are HEALTH findings: a device that cannot be trusted needs a maintenance visit,
and alerting routes them to maintenance, not to responders. Each check has hysteresis
or a count, so a borderline device reports once, not on every message.

- ``stuck``: the same value ``stuck_samples`` times in a row. A value at the bottom of
  the metric's range does not count: 0 %LEL in clean air or a dry water sensor at 0 m is
  the normal reading, not a fault.
- ``out_of_range``: outside the catalog's ``valid_range`` (what the sensor can report
  at all); clears after ``_RANGE_CLEAR`` good readings of that metric in a row.
- ``battery_low``: at or below ``battery_low`` %, clears at ``battery_clear`` %.
- ``seq_gap`` / ``seq_duplicate``: per ``seq_window`` messages, the share lost (holes in
  ``seq``) or repeated. Readings of one message share ``seq`` and ``ts``; the simulator
  and most firmware count one ``seq`` per device across telemetry and events. A large
  fall in ``seq`` is a restart, not a duplicate.
- ``clock_skew``: device ``ts`` further than ``max_clock_skew_s`` from ingest's receive
  time on ``clock_skew_samples`` messages in a row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from config.settings import HealthSettings
from shouwang.catalog import METRICS_BY_KEY
from shouwang.models import Detection, DetectionKind, Reading, Severity

__all__ = ["HEALTH_HAZARDS", "DeviceHealth", "HealthBook"]

HEALTH_HAZARDS = ("stuck", "out_of_range", "battery_low", "seq_gap", "seq_duplicate",
                  "clock_skew")
_RANGE_CLEAR = 60  # good readings in a row; an intermittent fault must not flap
_SEVERITY = {"stuck": Severity.YELLOW, "out_of_range": Severity.YELLOW,
             "battery_low": Severity.BLUE, "seq_gap": Severity.BLUE,
             "seq_duplicate": Severity.BLUE, "clock_skew": Severity.BLUE}
_RANGES = {key: m.valid_range for key, m in METRICS_BY_KEY.items()}


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


class DeviceHealth:
    """One device's health checks.

    Parameters
    ----------
    stuck_index
        Slot per watched metric for the stuck check (shared by all devices).
    config
        The ``health`` section.

    Examples
    --------
    >>> from config.settings import HealthSettings
    >>> health = DeviceHealth({"lel": 0}, HealthSettings(stuck_samples=3))
    >>> out = []
    >>> for i in range(4):
    ...     health.observe(Reading(ts=float(i), device_id="g1", site="s", metric="lel",
    ...                            value=7.5, seq=i), out)
    >>> [(d.hazard, d.firing, d.message) for d in out]
    [('stuck', True, '可燃气体浓度 连续 3 次读数均为 7.5，传感器可能卡死')]
    """

    __slots__ = ("_checks", "_config", "_dups", "_firing", "_last_seq", "_last_ts", "_lost",
                 "_messages", "_range_metric", "_range_ok", "_skewed", "_stuck_count",
                 "_stuck_value")

    def __init__(self, stuck_index: Mapping[str, int], config: HealthSettings) -> None:
        self._config = config
        # One lookup per reading: metric -> (lowest valid, highest valid, stuck slot or -1).
        self._checks = _checks(stuck_index)
        self._stuck_value: list[float] = [math.nan] * len(stuck_index)
        self._stuck_count: list[int] = [0] * len(stuck_index)
        self._firing: set[str] | None = None   # allocated on the first problem
        self._range_metric: str | None = None
        self._range_ok = 0
        self._last_seq: int | None = None
        self._last_ts = math.nan  # nan differs from every ts: the first reading is new
        self._messages = 0
        self._lost = 0
        self._dups = 0
        self._skewed = 0

    def observe(self, reading: Reading, out: list[Detection], now: float = 0.0) -> None:
        """Check one reading; append findings whose state changed."""
        metric = reading.metric
        value = reading.value
        if reading.ts != self._last_ts:
            self._new_message(reading, out, now)
        check = self._checks.get(metric)
        if check is None:
            return
        low, high, slot = check
        if value < low or value > high:
            self._range_metric = metric
            self._range_ok = 0
            self._fire("out_of_range", reading, out, now,
                       f"{_label(metric)} {_number(value)} 超出传感器量程 "
                       f"{_number(low)}–{_number(high)}，传感器可能故障")
            return
        if self._range_metric == metric:
            self._range_ok += 1
            if self._range_ok >= _RANGE_CLEAR:
                self._range_metric = None
                self._clear("out_of_range", reading, out, now, "读数恢复到量程内")
        if slot >= 0:
            if value == self._stuck_value[slot] and value != low:
                count = self._stuck_count[slot] + 1
                self._stuck_count[slot] = count
                if count == self._config.stuck_samples:
                    self._fire("stuck", reading, out, now,
                               f"{_label(metric)} 连续 {count} 次读数均为 {_number(value)}，"
                               f"传感器可能卡死")
            else:
                if self._stuck_count[slot] >= self._config.stuck_samples:
                    self._stuck_count[slot] = 1
                    if not any(c >= self._config.stuck_samples for c in self._stuck_count):
                        self._clear("stuck", reading, out, now, "读数恢复变化")
                self._stuck_value[slot] = value
                self._stuck_count[slot] = 1
        if metric == "battery":
            if value <= self._config.battery_low:
                self._fire("battery_low", reading, out, now,
                           f"电量 {_number(value)}%，低于 {_number(self._config.battery_low)}%，"
                           f"请更换电池或充电")
            elif value >= self._config.battery_clear:
                self._clear("battery_low", reading, out, now, "电量已恢复")

    def _new_message(self, reading: Reading, out: list[Detection], now: float) -> None:
        self._last_ts = reading.ts
        config = self._config
        received = reading.received_at
        if received:
            if abs(reading.ts - received) > config.max_clock_skew_s:
                self._skewed = max(self._skewed, 0) + 1
                if self._skewed >= config.clock_skew_samples:
                    self._fire("clock_skew", reading, out, now,
                               f"设备时钟偏差 {reading.ts - received:+.0f} 秒，请校时")
            else:
                self._skewed = min(self._skewed, 0) - 1
                if self._skewed <= -config.clock_skew_samples:
                    self._clear("clock_skew", reading, out, now, "设备时钟已恢复正常")
        seq = reading.seq
        if seq is None:
            return
        last = self._last_seq
        if last is not None:
            if seq == last or last - config.seq_reset_gap <= seq < last:
                self._dups += 1
                self._messages += 1
                self._judge_seq(reading, out, now)
                return
            if seq > last:
                self._lost += seq - last - 1
        self._last_seq = seq
        self._messages += 1
        self._judge_seq(reading, out, now)

    def _judge_seq(self, reading: Reading, out: list[Detection], now: float) -> None:
        config = self._config
        if self._messages < config.seq_window:
            return
        lost, dups, messages = self._lost, self._dups, self._messages
        self._messages = self._lost = self._dups = 0
        loss = lost / (messages + lost)
        if loss >= config.seq_loss_ratio:
            self._fire("seq_gap", reading, out, now,
                       f"最近 {messages + lost} 条消息丢失 {lost} 条（{loss:.0%}），"
                       f"通信质量差")
        elif loss < config.seq_loss_ratio / 2:
            self._clear("seq_gap", reading, out, now, "消息丢失已恢复正常")
        share = dups / messages
        if share >= config.seq_duplicate_ratio:
            self._fire("seq_duplicate", reading, out, now,
                       f"最近 {messages} 条消息中 {dups} 条序号重复（{share:.0%}），"
                       f"设备或网关可能重发")
        elif share < config.seq_duplicate_ratio / 2:
            self._clear("seq_duplicate", reading, out, now, "消息重复已恢复正常")

    def _fire(self, hazard: str, reading: Reading, out: list[Detection], now: float,
              message: str) -> None:
        firing = self._firing
        if firing is None:
            firing = self._firing = set()
        elif hazard in firing:
            return
        firing.add(hazard)
        out.append(_detection(hazard, reading, now, firing=True, message=message))

    def _clear(self, hazard: str, reading: Reading, out: list[Detection], now: float,
               message: str) -> None:
        firing = self._firing
        if firing is None or hazard not in firing:
            return
        firing.discard(hazard)
        out.append(_detection(hazard, reading, now, firing=False, message=message))

    def firing(self) -> frozenset[str]:
        return frozenset(self._firing or ())

    def dump(self) -> tuple[object, ...]:
        """Plain, picklable state (for snapshots)."""
        return (list(self._stuck_value), list(self._stuck_count), sorted(self._firing or ()),
                self._range_metric, self._range_ok, self._last_seq, self._last_ts,
                self._messages, self._lost, self._dups, self._skewed)

    def load(self, state: tuple[object, ...]) -> None:
        (stuck_value, stuck_count, firing, self._range_metric, self._range_ok,
         self._last_seq, self._last_ts, self._messages, self._lost, self._dups,
         self._skewed) = state  # type: ignore[assignment]  # checked by the restore's except
        assert isinstance(stuck_value, list) and isinstance(stuck_count, list)
        assert isinstance(firing, list)
        if len(stuck_value) == len(self._stuck_value):
            self._stuck_value, self._stuck_count = stuck_value, stuck_count
        self._firing = set(firing) or None


_CHECKS: dict[tuple[tuple[str, int], ...], Mapping[str, tuple[float, float, int]]] = {}


def _checks(stuck_index: Mapping[str, int]) -> Mapping[str, tuple[float, float, int]]:
    key = tuple(sorted(stuck_index.items()))
    checks = _CHECKS.get(key)
    if checks is None:
        checks = _CHECKS[key] = {
            metric: (low, high, stuck_index.get(metric, -1))
            for metric, (low, high) in _RANGES.items()}
    return checks


def _label(metric: str) -> str:
    description = METRICS_BY_KEY.get(metric)
    return description.label_zh if description else metric


def _detection(hazard: str, reading: Reading, now: float, *, firing: bool,
               message: str) -> Detection:
    return Detection(ts=now, device_id=reading.device_id, site=reading.site, hazard=hazard,
                     kind=DetectionKind.HEALTH, severity=_SEVERITY[hazard], firing=firing,
                     metric=reading.metric, value=reading.value, message=message,
                     reading_ts=reading.ts, drill=reading.drill)


class HealthBook:
    """Shares the per-type stuck-metric index between devices."""

    def __init__(self, config: HealthSettings) -> None:
        self._config = config
        self._index: dict[str, Mapping[str, int]] = {}

    def for_device(self, device_type: str) -> DeviceHealth:
        index = self._index.get(device_type)
        if index is None:
            metrics = [m.key for m in METRICS_BY_KEY.values()
                       if device_type in m.device_types and m.key in self._config.stuck_metrics]
            index = self._index[device_type] = {m: i for i, m in enumerate(metrics)}
        return DeviceHealth(index, self._config)

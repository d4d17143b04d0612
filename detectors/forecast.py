"""Early warning: a time-to-threshold forecast and rate-of-rise, on a robust trend.

The trend is Sen's slope (the median of all pairwise slopes) with the Mann-Kendall test
for its significance, over the last ``max_samples`` readings within ``window_s``. Both
shrug off single outliers and sensor noise, unlike the difference of two points: one
spike moves a median of pairwise slopes hardly at all, and noise without a direction
gives a Mann-Kendall ``z`` near zero.

Per (device, metric) a small ring buffer holds the recent samples. The O(n²) trend is
only computed while it can matter: the value is in the watch band below level 1, the
buffer's range is wide enough for a rate-of-rise, or a warning is out and may clear.
A gas sensor reading 0.5 %LEL costs one ring-buffer write.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from config.settings import ForecastSettings, RateOfRiseRule
from detectors.threshold import DeviceThresholds, Threshold
from shouwang.catalog import METRICS_BY_KEY
from shouwang.models import Detection, DetectionKind, Reading, Severity

__all__ = ["DeviceTrends", "Trend", "TrendBook", "robust_trend"]

_NOT_WARNED, _WARNED_BLUE, _WARNED_YELLOW = 0, 1, 2
_CLEAR_HORIZON_FACTOR = 2.0  # a warning clears once the crossing recedes past 2x horizon


@dataclass(frozen=True, slots=True, kw_only=True)
class Trend:
    slope: float   # units per second (Sen's slope)
    level: float   # the trend line's value at the newest sample
    z: float       # Mann-Kendall statistic; > 0 rising


def robust_trend(times: Sequence[float], values: Sequence[float]) -> Trend:
    """Sen's slope, its line's value at the last time, and the Mann-Kendall ``z``.

    ``z`` uses the no-ties variance, which overstates the variance when readings are
    quantised and so errs towards "not significant".

    >>> t = [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0]
    >>> v = [1.0, 1.5, 2.0, 9.0, 3.0, 3.5, 4.0, 4.5]  # a ramp of 0.1/s with one spike
    >>> trend = robust_trend(t, v)
    >>> round(trend.slope, 3), round(trend.level, 2), round(trend.z, 1)
    (0.1, 4.5, 2.4)
    """
    n = len(times)
    slopes: list[float] = []
    s = 0
    for i in range(n - 1):
        ti, vi = times[i], values[i]
        for j in range(i + 1, n):
            dv = values[j] - vi
            s += (dv > 0) - (dv < 0)
            slopes.append(dv / (times[j] - ti))
    slope = _median(slopes)
    t_last = times[-1]
    level = _median([v + slope * (t_last - t) for t, v in zip(times, values, strict=True)])
    variance = n * (n - 1) * (2 * n + 5) / 18.0
    z = 0.0 if s == 0 else (s - math.copysign(1.0, s)) / math.sqrt(variance)
    return Trend(slope=slope, level=level, z=z)


def _median(xs: list[float]) -> float:
    xs.sort()
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else 0.5 * (xs[mid - 1] + xs[mid])


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _eta_zh(seconds: float) -> str:
    if seconds < 15:
        return "即将"
    if seconds < 300:
        return f"预计约 {round(seconds / 10) * 10:.0f} 秒后"
    return f"预计约 {round(seconds / 60):.0f} 分钟后"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Spec:
    """What is watched on one metric of a device."""

    index: int                      # slot in DeviceTrends' window list
    metric: str
    threshold: Threshold | None     # the level-1 rule a forecast aims at
    level_slot: int                 # that rule's slot in DeviceThresholds' levels
    rate: RateOfRiseRule | None
    rate_per_s: float
    rate_gate: float                # buffer range that makes a rate-of-rise possible


class _Window:
    """Ring buffer of (ts, value) plus the warning state of one device metric."""

    __slots__ = ("head", "rate_streak", "rising", "size", "streak", "t", "v", "warned")

    def __init__(self, capacity: int, ts: float, value: float) -> None:
        # Filled with the first sample, so min/max of ``v`` need no fill count.
        self.t = array("d", [-math.inf]) * capacity
        self.v = array("d", [value]) * capacity
        self.t[0] = ts
        self.head = 1 % capacity
        self.size = 1
        self.warned = _NOT_WARNED
        self.streak = math.nan       # ts since which the warning condition holds
        self.rising = False
        self.rate_streak = math.nan  # the same for the rate-of-rise condition

    def add(self, ts: float, value: float) -> bool:
        """Store a sample; False for one not newer than the last (a redelivery)."""
        capacity = len(self.t)
        head = self.head
        if ts <= self.t[head - 1]:
            return False
        self.t[head] = ts
        self.v[head] = value
        self.head = (head + 1) % capacity
        if self.size < capacity:
            self.size += 1
        return True

    def oldest(self) -> float:
        return self.t[(self.head - self.size) % len(self.t)]

    def recent(self, window_s: float) -> tuple[list[float], list[float]]:
        """Samples within ``window_s`` of the newest, oldest first."""
        capacity = len(self.t)
        t, v = self.t, self.v
        newest = t[self.head - 1]
        times: list[float] = []
        values: list[float] = []
        for k in range(self.head - self.size, self.head):
            i = k % capacity
            if newest - t[i] <= window_s:
                times.append(t[i])
                values.append(v[i])
        return times, values

    def dump(self) -> tuple[object, ...]:
        times, values = self.recent(math.inf)
        return (times, values, self.warned, self.streak, self.rising, self.rate_streak)

    @classmethod
    def load(cls, capacity: int, state: tuple[object, ...]) -> _Window:
        times, values, warned, streak, rising, rate_streak = state
        assert isinstance(times, list) and isinstance(values, list)
        window = cls(capacity, times[0], values[0])
        for ts, value in zip(times[1:], values[1:], strict=True):
            window.add(ts, value)
        window.warned, window.streak = int(warned), float(streak)  # type: ignore[call-overload, arg-type]
        window.rising, window.rate_streak = bool(rising), float(rate_streak)  # type: ignore[arg-type]
        return window


class DeviceTrends:
    """One device's trend windows; appends pre-warnings and rate-of-rise findings.

    Parameters
    ----------
    specs
        What to watch, by metric (shared by devices of one type and thresholds).
    config
        The ``forecast`` section.
    """

    __slots__ = ("_config", "_specs", "_windows")

    def __init__(self, specs: Mapping[str, _Spec], config: ForecastSettings) -> None:
        self._specs = specs
        self._config = config
        self._windows: list[_Window | None] = [None] * len(specs)

    def observe(self, reading: Reading, now: float, out: list[Detection],
                levels: Sequence[int]) -> None:
        """Feed one telemetry reading; ``levels`` are the device's threshold levels now."""
        spec = self._specs.get(reading.metric)
        if spec is None:
            return
        value = reading.value
        window = self._windows[spec.index]
        if window is None:
            window = self._windows[spec.index] = _Window(self._config.max_samples,
                                                         reading.ts, value)
        elif not window.add(reading.ts, value):
            return
        config = self._config
        threshold = spec.threshold
        watch = threshold is not None and (
            window.warned or (levels[spec.level_slot] == 0
                              and value >= config.watch_fraction * threshold.levels[0]))
        rate = spec.rate is not None
        if not (window.warned or window.rising):
            # Cheap gates before the O(n²) trend. A crossing within the horizon needs
            # the buffer to have moved by about (distance left) x span / horizon; half
            # of that leaves room for noise. A rate-of-rise needs rate x min_span_s.
            if not (watch or rate):
                return
            moved = max(window.v) - min(window.v)
            if watch:
                assert threshold is not None
                span = window.t[window.head - 1] - window.oldest()
                watch = moved >= 0.5 * (threshold.levels[0] - value) * span / config.horizon_s
            rate = rate and moved >= spec.rate_gate
            if not (watch or rate):
                return
        else:
            rate = rate and (window.rising or max(window.v) - min(window.v) >= spec.rate_gate)
        times, values = window.recent(config.window_s)
        if len(times) < config.min_samples or times[-1] - times[0] < config.min_span_s:
            return
        trend = robust_trend(times, values)
        if watch:
            assert threshold is not None
            self._forecast(spec, threshold, window, trend, reading, now, out,
                           reached=levels[spec.level_slot] > 0)
        if rate:
            self._rate_of_rise(spec, window, trend, reading, now, out)

    def _forecast(self, spec: _Spec, threshold: Threshold, window: _Window, trend: Trend,
                  reading: Reading, now: float, out: list[Detection], *,
                  reached: bool) -> None:
        config = self._config
        target = threshold.levels[0]
        eta = (target - trend.level) / trend.slope if trend.slope > 0 else math.inf
        eta = max(eta, 0.0)
        head = _head(spec.metric, reading.value)
        if window.warned:
            if reached:
                message = f"{head}，已达到一级报警值 {_number(target)}，预警转为报警"
            elif (trend.z < config.z_clear or trend.slope <= 0
                  or eta > _CLEAR_HORIZON_FACTOR * config.horizon_s):
                message = f"{head}，上升趋势已解除"
            else:
                if window.warned == _WARNED_BLUE and eta <= config.urgent_s:
                    window.warned = _WARNED_YELLOW
                    out.append(self._warning(spec, threshold, reading, now, eta, head))
                return
            window.warned = _NOT_WARNED
            window.streak = math.nan
            out.append(_detection(reading, now, hazard=f"{threshold.hazard}_forecast",
                                  severity=Severity.BLUE, firing=False, message=message))
            return
        if (not reached and trend.z >= config.z_fire and eta <= config.horizon_s
                and trend.level >= config.watch_fraction * target):
            if math.isnan(window.streak):
                window.streak = reading.ts
            if reading.ts - window.streak >= config.confirm_s:
                window.warned = _WARNED_YELLOW if eta <= config.urgent_s else _WARNED_BLUE
                out.append(self._warning(spec, threshold, reading, now, eta, head))
        else:
            window.streak = math.nan

    def _warning(self, spec: _Spec, threshold: Threshold, reading: Reading, now: float,
                 eta: float, head: str) -> Detection:
        severity = Severity.YELLOW if eta <= self._config.urgent_s else Severity.BLUE
        message = (f"{head}，持续上升，{_eta_zh(eta)}达到一级报警值 "
                   f"{_number(threshold.levels[0])}")
        return _detection(reading, now, hazard=f"{threshold.hazard}_forecast",
                          severity=severity, firing=True, message=message)

    def _rate_of_rise(self, spec: _Spec, window: _Window, trend: Trend, reading: Reading,
                      now: float, out: list[Detection]) -> None:
        rule = spec.rate
        assert rule is not None
        per_min = trend.slope * 60.0
        severity = Severity[rule.severity.upper()]
        head = _head(spec.metric, reading.value)
        unit = _unit(spec.metric)
        if window.rising:
            if per_min < rule.rate_per_min / 2 or trend.z < self._config.z_clear:
                window.rising = False
                window.rate_streak = math.nan
                out.append(_detection(reading, now, hazard=rule.hazard, severity=severity,
                                      firing=False, message=f"{head}，升温速率已恢复正常"))
            return
        if per_min >= rule.rate_per_min and trend.z >= self._config.z_fire:
            if math.isnan(window.rate_streak):
                window.rate_streak = reading.ts
            if reading.ts - window.rate_streak >= self._config.confirm_s:
                window.rising = True
                out.append(_detection(
                    reading, now, hazard=rule.hazard, severity=severity, firing=True,
                    message=(f"{head}，上升速率 {_number(per_min)} {unit}/分钟，"
                             f"超过差温报警值 {_number(rule.rate_per_min)} {unit}/分钟")))
        else:
            window.rate_streak = math.nan

    def dump(self) -> tuple[object, ...]:
        """Plain, picklable state (for snapshots)."""
        return tuple(None if w is None else w.dump() for w in self._windows)

    def load(self, state: tuple[object, ...]) -> None:
        if len(state) != len(self._windows):
            return  # the configuration changed; start these windows afresh
        capacity = self._config.max_samples
        self._windows = [None if s is None else _Window.load(capacity, s)  # type: ignore[arg-type]
                         for s in state]


def _head(metric: str, value: float) -> str:
    description = METRICS_BY_KEY.get(metric)
    label = description.label_zh if description else metric
    unit = f" {description.unit}" if description and description.unit else ""
    return f"{label} {_number(value)}{unit}"


def _unit(metric: str) -> str:
    description = METRICS_BY_KEY.get(metric)
    return description.unit if description else ""


def _detection(reading: Reading, now: float, *, hazard: str, severity: Severity, firing: bool,
               message: str) -> Detection:
    return Detection(ts=now, device_id=reading.device_id, site=reading.site, hazard=hazard,
                     kind=DetectionKind.HAZARD, severity=severity, firing=firing,
                     metric=reading.metric, value=reading.value, level=0, message=message,
                     reading_ts=reading.ts, drill=reading.drill)


class TrendBook:
    """Compiles what to watch per device from its thresholds and the rate-of-rise rules.

    Devices sharing a compiled threshold table share one spec table too.
    """

    def __init__(self, config: ForecastSettings, rate_rules: Sequence[RateOfRiseRule]) -> None:
        self._config = config
        self._rate_rules = rate_rules
        self._cache: dict[tuple[int, str], Mapping[str, _Spec]] = {}

    def for_device(self, device_type: str, thresholds: DeviceThresholds) -> DeviceTrends | None:
        """Fresh trend state for one device, or None when nothing of it is watched."""
        key = (id(thresholds.checks_by_metric), device_type)
        specs = self._cache.get(key)
        if specs is None:
            specs = self._cache[key] = self._compile(device_type, thresholds)
        return DeviceTrends(specs, self._config) if specs else None

    def _compile(self, device_type: str, thresholds: DeviceThresholds) -> Mapping[str, _Spec]:
        metrics: list[str] = []
        targets: dict[str, tuple[Threshold, int]] = {}
        for metric, checks in thresholds.checks_by_metric.items():
            if metric not in self._config.metrics:
                continue
            for check in checks:
                if check.threshold.direction == "above":
                    targets[metric] = (check.threshold, check.slot)
                    metrics.append(metric)
                    break
        rates = {r.metric: r for r in self._rate_rules if r.device_type == device_type}
        metrics += [m for m in rates if m not in targets]
        specs: dict[str, _Spec] = {}
        for index, metric in enumerate(metrics):
            threshold, slot = targets.get(metric, (None, -1))
            rule = rates.get(metric)
            rate_per_s = rule.rate_per_min / 60.0 if rule else 0.0
            specs[metric] = _Spec(index=index, metric=metric, threshold=threshold,
                                  level_slot=slot, rate=rule, rate_per_s=rate_per_s,
                                  rate_gate=rate_per_s * self._config.min_span_s)
        return specs

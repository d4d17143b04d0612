"""Threshold rules with levels and hysteresis (gas %LEL, smoke, water level, heart rate...).

A ``Threshold`` is one compiled rule and holds no state: it maps (current level, value)
to the next level. ``DeviceThresholds`` keeps one device's levels for every rule of its
type and turns level changes into ``Detection``s, so steady state emits nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

from config.settings import ThresholdRule
from shouwang.catalog import METRICS_BY_KEY, DeviceType
from shouwang.models import Detection, DetectionKind, Device, Reading, Severity

__all__ = ["DeviceThresholds", "Threshold", "ThresholdBook"]

log = logging.getLogger(__name__)

_LEVEL_NAMES = ("一级", "二级", "三级", "四级")


def _number(value: float) -> str:
    """Short decimal text: 32.5, 25, 0.35."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


@dataclass(frozen=True, slots=True, kw_only=True)
class Threshold:
    """Levels with hysteresis on one metric; the caller keeps each device's current level.

    A value at or past level *i* raises the level to *i* at once. The level falls only when
    the value goes back past ``levels[i-1] - hysteresis`` (``+`` for ``"below"``), so a
    value wobbling around a boundary does not flap.

    Parameters
    ----------
    hazard
        What a firing level means, e.g. ``"gas"``.
    metric
        The reading metric it watches, e.g. ``"lel"``.
    direction
        ``"above"`` (levels ascending) or ``"below"`` (levels descending).
    levels
        Alarm values, level 1 first.
    severities
        One ``Severity`` per level.
    hysteresis
        How far back past a level the value must go before the level falls.

    Examples
    --------
    >>> gas = Threshold(hazard="gas", metric="lel", levels=(25.0, 50.0),
    ...                 severities=(Severity.ORANGE, Severity.RED), hysteresis=5.0)
    >>> level, trace = 0, []
    >>> for value in (10, 25.5, 24.5, 25.5, 52, 47, 44, 21, 19):
    ...     level = gas.next_level(level, value)
    ...     trace.append(level)
    >>> trace
    [0, 1, 1, 1, 2, 2, 1, 1, 0]
    >>> gas.message(32.5, level=1, previous=0)
    '可燃气体浓度 32.5 %LEL，超过一级报警值 25'

    ``"below"`` mirrors it: a slow heart rate returns to normal above 45 + 5 bpm.

    >>> slow = Threshold(hazard="heart_rate_low", metric="heart_rate", direction="below",
    ...                  levels=(45.0, 35.0), severities=(Severity.YELLOW, Severity.ORANGE),
    ...                  hysteresis=5.0)
    >>> [slow.next_level(1, v) for v in (30, 48, 51)]
    [2, 1, 0]
    """

    hazard: str
    metric: str
    direction: Literal["above", "below"] = "above"
    levels: tuple[float, ...]
    severities: tuple[Severity, ...]
    hysteresis: float = 0.0
    # Derived: "below" is "above" on the negated value, so one comparison loop serves both.
    _sign: float = field(init=False, repr=False, compare=False)
    _raise_at: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _clear_below: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.levels or len(self.levels) > len(_LEVEL_NAMES):
            raise ValueError(f"{self.metric}: between 1 and {len(_LEVEL_NAMES)} levels")
        if len(self.severities) != len(self.levels):
            raise ValueError(f"{self.metric}: one severity per level")
        if self.hysteresis < 0:
            raise ValueError(f"{self.metric}: hysteresis must be >= 0")
        sign = 1.0 if self.direction == "above" else -1.0
        raise_at = tuple(sign * level for level in self.levels)
        if any(later <= earlier for earlier, later in pairwise(raise_at)):
            raise ValueError(f"{self.metric}: levels must be strictly "
                             f"{'in' if sign > 0 else 'de'}creasing for {self.direction!r}")
        object.__setattr__(self, "_sign", sign)
        object.__setattr__(self, "_raise_at", raise_at)
        object.__setattr__(self, "_clear_below",
                           tuple(bound - self.hysteresis for bound in raise_at))

    @classmethod
    def from_rule(cls, rule: ThresholdRule,
                  levels: tuple[float, ...] | None = None) -> Threshold:
        """Compile a configured rule, optionally with a device's own levels."""
        return cls(hazard=rule.hazard, metric=rule.metric, direction=rule.direction,
                   levels=rule.levels if levels is None else levels,
                   severities=tuple(rule.severity(i + 1) for i in range(len(rule.levels))),
                   hysteresis=rule.hysteresis)

    def next_level(self, level: int, value: float) -> int:
        """The level after seeing ``value`` when the device is at ``level`` (0 = normal)."""
        x = value * self._sign
        reached = 0
        for bound in self._raise_at:
            if x < bound:
                break
            reached += 1
        if reached >= level:
            return reached
        clear_below = self._clear_below
        while level > reached and x < clear_below[level - 1]:
            level -= 1
        return level

    def message(self, value: float, *, level: int, previous: int) -> str:
        """Short Chinese text for a change from ``previous`` to ``level``."""
        description = METRICS_BY_KEY.get(self.metric)
        label = description.label_zh if description else self.metric
        unit = f" {description.unit}" if description and description.unit else ""
        head = f"{label} {_number(value)}{unit}"
        if level == 0:
            return f"{head}，已恢复正常"
        name, bound = _LEVEL_NAMES[level - 1], self.levels[level - 1]
        if level < previous:
            towards = "回落" if self._sign > 0 else "回升"
            return f"{head}，{towards}至{name}（报警值 {_number(bound)}）"
        beyond = "超过" if self._sign > 0 else "低于"
        verb = "达到" if value == bound else beyond
        return f"{head}，{verb}{name}报警值 {_number(bound)}"

    def detection(self, reading: Reading, *, level: int, previous: int, now: float) -> Detection:
        """The finding for a level change; a return to 0 is the non-firing clear."""
        return Detection(
            ts=now, device_id=reading.device_id, site=reading.site, hazard=self.hazard,
            kind=DetectionKind.HAZARD, severity=self.severities[(level or previous) - 1],
            firing=level > 0, metric=self.metric, value=reading.value, level=level,
            message=self.message(reading.value, level=level, previous=previous),
            reading_ts=reading.ts, drill=reading.drill,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Check:
    slot: int                 # index into DeviceThresholds' level list
    threshold: Threshold
    siblings: tuple[int, ...]  # slots of other rules with the same hazard on this device


def _device_levels(rule: ThresholdRule, device: Device) -> tuple[float, ...] | None:
    """The device's own (level 1, level 2) for this rule, if it has fitting ones.

    One override pair per metric may serve one of several rules on that metric (heart
    rate has a "high" and a "low" rule): it applies to the rule whose direction its order
    matches, ascending for ``"above"`` and descending for ``"below"``.
    """
    pair = device.thresholds.get(rule.metric)
    if pair is None or len(rule.levels) != 2:
        return None
    first, second = pair
    fits = first < second if rule.direction == "above" else first > second
    return (float(first), float(second)) if fits else None


class DeviceThresholds:
    """One device's current level per rule; reports only changes.

    A clear (back to level 0) is held back while another rule of the same hazard on the
    device still fires (smoke density and the detector's own alarm are both "smoke"):
    downstream an alert is one hazard at one place, and one rule must not resolve it
    under the other.
    """

    __slots__ = ("_by_metric", "_levels")

    def __init__(self, by_metric: Mapping[str, tuple[_Check, ...]], rule_count: int) -> None:
        self._by_metric = by_metric
        self._levels = [0] * rule_count

    def levels(self) -> tuple[int, ...]:
        """Current level per rule slot (for inspection and snapshots)."""
        return tuple(self._levels)

    @property
    def live_levels(self) -> list[int]:
        """The level list itself, updated in place (read by the forecasts on the hot path)."""
        return self._levels

    @property
    def checks_by_metric(self) -> Mapping[str, tuple[_Check, ...]]:
        return self._by_metric

    def load(self, levels: tuple[int, ...]) -> None:
        """Restore levels from a snapshot; ignored if the rule set changed size since."""
        if len(levels) == len(self._levels):
            self._levels[:] = levels

    def observe(self, reading: Reading, now: float, out: list[Detection]) -> None:
        """Append a detection to ``out`` for each rule whose level this reading changes."""
        checks = self._by_metric.get(reading.metric)
        if checks is None:
            return
        levels = self._levels
        value = reading.value
        for check in checks:
            previous = levels[check.slot]
            level = check.threshold.next_level(previous, value)
            if level == previous:
                continue
            levels[check.slot] = level
            if level or not any(levels[s] for s in check.siblings):
                out.append(check.threshold.detection(reading, level=level, previous=previous,
                                                     now=now))


_ByMetric = Mapping[str, tuple[_Check, ...]]


class ThresholdBook:
    """All configured rules, indexed by device type and metric, compiled once.

    Devices without their own levels share one compiled table per type; only a device
    with overrides gets its own.
    """

    def __init__(self, rules: Sequence[ThresholdRule]) -> None:
        self._rules: dict[DeviceType, tuple[ThresholdRule, ...]] = {}
        for rule in rules:
            self._rules[rule.device_type] = (*self._rules.get(rule.device_type, ()), rule)
        self._shared: dict[DeviceType, _ByMetric] = {}

    def rules_for(self, device_type: DeviceType) -> tuple[ThresholdRule, ...]:
        return self._rules.get(device_type, ())

    def for_device(self, device: Device) -> DeviceThresholds:
        """Fresh state (every rule at level 0) for one device."""
        rules = self.rules_for(device.type)
        self._warn_unused_overrides(rules, device)
        if any(_device_levels(r, device) is not None for r in rules):
            by_metric = self._compile(rules, device)
        else:
            shared = self._shared.get(device.type)
            if shared is None:
                shared = self._shared[device.type] = self._compile(rules, None)
            by_metric = shared
        return DeviceThresholds(by_metric, len(rules))

    @staticmethod
    def _compile(rules: Sequence[ThresholdRule], device: Device | None) -> _ByMetric:
        by_metric: dict[str, list[_Check]] = {}
        for slot, rule in enumerate(rules):
            siblings = tuple(i for i, other in enumerate(rules)
                             if i != slot and other.hazard == rule.hazard)
            levels = None if device is None else _device_levels(rule, device)
            by_metric.setdefault(rule.metric, []).append(
                _Check(slot=slot, threshold=Threshold.from_rule(rule, levels),
                       siblings=siblings))
        return {metric: tuple(checks) for metric, checks in by_metric.items()}

    @staticmethod
    def _warn_unused_overrides(rules: Sequence[ThresholdRule], device: Device) -> None:
        for metric, pair in device.thresholds.items():
            if not any(_device_levels(r, device) for r in rules if r.metric == metric):
                log.warning("threshold override ignored device_id=%s metric=%s levels=%s: no "
                            "two-level %s rule fits its order", device.id, metric, pair,
                            device.type)

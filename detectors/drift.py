"""Drift against neighbours: a sensor whose level slowly parts from its peers' needs calibrating.

Sensors of one type in one room (else one building) see nearly the same gas, heat or
water. Each keeps a robust level: an exponentially weighted mean with time constant
``tau_s`` of its values, each clipped to ``tolerance`` around the level (a Huber step),
so a cooking bump or a shower moves it little. Every ``check_every_s`` of a device's own
time its level is compared with the median level of its group — its room's sensors of
the same type and metric when at least ``min_peers`` others there have a recent,
warmed-up level, else its building's. The median includes the device itself, so with
three or more sensors one that drifts cannot pull its neighbours into "drifting" too.

A deviation beyond the rule's ``tolerance`` held for ``persist_s`` fires
``<metric>_drift`` (HEALTH, to maintenance); it clears once the deviation is back
under ``clear``. A real incident is not drift: while any of the device's hazard rules
is above level 0 its level does not learn and its deviation clock restarts, and an
incident too short to last ``persist_s`` never gets there.

The state is columnar, shared by all devices of the engine: one slot per (device,
watched metric) in a few ``array('d')`` columns, about 60 bytes a slot. Peers are
read from those columns, so a worker compares the devices it owns (a peer whose
partition is elsewhere has no recent level here and is left out).
"""

from __future__ import annotations

import math
import statistics
from array import array
from collections.abc import Mapping, Sequence
from typing import cast

from config.settings import DriftRule, DriftSettings
from shouwang.catalog import METRICS_BY_KEY, DeviceType
from shouwang.models import Detection, DetectionKind, Device, Reading, Severity

__all__ = ["DRIFT_SUFFIX", "DriftWatch"]

DRIFT_SUFFIX = "_drift"  # hazard = metric + suffix
_SEVERITY = Severity.YELLOW  # like "stuck": the readings cannot be trusted
_NAN = math.nan


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


class DriftWatch:
    """Neighbour comparison for every device and watched metric.

    Parameters
    ----------
    config
        The ``drift`` section.
    devices
        The registry: which devices share a room or a building.

    Examples
    --------
    >>> from config.settings import DriftSettings
    >>> from shouwang.models import Location
    >>> here = Location(building="1号楼", room="101")
    >>> devices = {d: Device(id=d, type=DeviceType.GAS, site="s", location=here)
    ...            for d in ("g1", "g2", "g3")}
    >>> watch = DriftWatch(DriftSettings(persist_s=3600.0), devices)
    >>> out, levels, slots = [], [0], watch.take_slots()
    >>> for i in range(24 * 60):  # a day, one reading a minute; g3 creeps up 1 %LEL an hour
    ...     for device_id in devices:
    ...         value = 0.5 + (i / 60.0 if device_id == "g3" else 0.0)
    ...         watch.observe(slots[device_id], Reading(
    ...             ts=60.0 * i, device_id=device_id, site="s", metric="lel", value=value),
    ...             levels, 0.0, out)
    >>> [(d.device_id, d.hazard, d.firing) for d in out]
    [('g3', 'lel_drift', True)]
    """

    def __init__(self, config: DriftSettings, devices: Mapping[str, Device]) -> None:
        self._config = config
        rules: dict[DeviceType, list[DriftRule]] = {}
        for rule in config.rules:
            rules.setdefault(rule.device_type, []).append(rule)
        # Per type: metric -> column within a device's run of slots.
        self._columns: dict[DeviceType, dict[str, int]] = {
            t: {r.metric: i for i, r in enumerate(rs)} for t, rs in rules.items()}
        self._base: dict[str, int] = {}
        slot_rule: list[DriftRule] = []
        rooms: dict[tuple[object, ...], list[int]] = {}
        buildings: dict[tuple[object, ...], list[int]] = {}
        room_of: list[tuple[object, ...] | None] = []
        building_of: list[tuple[object, ...] | None] = []
        for device_id in sorted(devices):
            device = devices[device_id]
            mine = rules.get(device.type)
            if not mine:
                continue
            self._base[device_id] = len(slot_rule)
            where = device.location
            for rule in mine:
                slot = len(slot_rule)
                slot_rule.append(rule)
                key = (rule.device_type, rule.metric, device.site, where.building)
                building = key if where.building else None
                room = ((*key, where.unit, where.floor, where.room)
                        if where.building and where.room else None)
                if building is not None:
                    buildings.setdefault(building, []).append(slot)
                if room is not None:
                    rooms.setdefault(room, []).append(slot)
                building_of.append(building)
                room_of.append(room)
        self._rules = tuple(slot_rule)
        self.metrics = frozenset(rule.metric for rule in config.rules)  # the engine's pre-check
        # Each slot points to its groups' shared member tuples (itself included).
        # A group too small to judge anyone is not kept (most rooms hold one sensor).
        too_small = config.min_peers + 1
        room_groups = {k: tuple(v) for k, v in rooms.items() if len(v) >= too_small}
        building_groups = {k: tuple(v) for k, v in buildings.items() if len(v) >= too_small}
        self._room = [room_groups.get(k, ()) if k is not None else () for k in room_of]
        self._building = [building_groups.get(k, ()) if k is not None else ()
                          for k in building_of]
        size = len(slot_rule)
        self._level = array("d", [_NAN]) * size
        self._first_ts = array("d", [_NAN]) * size
        self._last_ts = array("d", [_NAN]) * size
        self._since = array("d", [_NAN]) * size
        self._next_check = array("d", [_NAN]) * size
        self._firing = bytearray(size)

    def take_slots(self) -> dict[str, int]:
        """Each watched device's first slot, handed over once: the caller keeps it with
        the device's state (a dict here would cost more than the slots themselves)."""
        slots, self._base = self._base, {}
        return slots

    def observe(self, base: int, reading: Reading, hazard_levels: Sequence[int],
                now: float, out: list[Detection]) -> None:
        """Learn one telemetry reading and judge the device against its peers when due.

        ``hazard_levels`` are the device's threshold levels (live): any above 0 means
        an incident, which is not learnt and not judged.
        """
        columns = self._columns.get(self._rules[base].device_type)
        column = columns.get(reading.metric) if columns is not None else None
        if column is None:
            return
        slot = base + column
        ts = reading.ts
        last = self._last_ts[slot]
        if any(hazard_levels):
            # Not learnt, but the time moves on: the first reading after the incident
            # must not weigh as if the sensor had been silent all along.
            self._since[slot] = _NAN
            if last == last:
                self._last_ts[slot] = max(last, ts)
            return
        rule = self._rules[slot]
        value = reading.value
        if last != last:  # nan: the first reading starts the level
            self._level[slot] = value
            self._first_ts[slot] = ts
            self._last_ts[slot] = ts
            self._next_check[slot] = ts + self._config.check_every_s
            return
        dt = ts - last
        if dt <= 0.0:
            return  # repeated or late message: already learnt
        level = self._level[slot]
        step = min(max(value - level, -rule.tolerance), rule.tolerance)
        self._level[slot] = level + (1.0 - math.exp(-dt / self._config.tau_s)) * step
        self._last_ts[slot] = ts
        if ts >= self._next_check[slot]:
            self._next_check[slot] = ts + self._config.check_every_s
            self._judge(slot, rule, reading, now, out)

    def _judge(self, slot: int, rule: DriftRule, reading: Reading, now: float,
               out: list[Detection]) -> None:
        config = self._config
        ts = reading.ts
        if ts - self._first_ts[slot] < config.warmup_s:
            return
        found = self._reference(slot, ts)
        if found is None:
            self._since[slot] = _NAN  # no judgement without neighbours
            return
        median, peers, scope = found
        level = self._level[slot]
        deviation = level - median
        if self._firing[slot]:
            if abs(deviation) < rule.clear:
                self._firing[slot] = 0
                self._since[slot] = _NAN
                out.append(self._detection(reading, now, firing=False, message=(
                    f"{_label(rule.metric)} 与同{scope}其他传感器重新一致")))
            return
        if abs(deviation) <= rule.tolerance:
            self._since[slot] = _NAN
            return
        since = self._since[slot]
        if since != since:
            self._since[slot] = ts
            return
        if ts - since >= config.persist_s:
            self._firing[slot] = 1
            unit = _unit(rule.metric)
            hours = (ts - since) / 3600.0
            out.append(self._detection(reading, now, firing=True, message=(
                f"{_label(rule.metric)} 长期偏离同{scope} {peers} 台同类传感器："
                f"本机约 {_number(level)}{unit}，同组中位数 {_number(median)}{unit}，"
                f"偏差 {deviation:+.2f}{unit} 已持续 {hours:.1f} 小时，传感器可能漂移，请校准")))

    def _reference(self, slot: int, ts: float) -> tuple[float, int, str] | None:
        """Median level of the room's group, else the building's, with the peer count."""
        for members, scope in ((self._room[slot], "房间"), (self._building[slot], "楼栋")):
            if len(members) <= self._config.min_peers:
                continue
            levels = [self._level[m] for m in members
                      if m == slot or self._usable(m, ts)]
            if len(levels) > self._config.min_peers:
                return statistics.median(levels), len(levels) - 1, scope
        return None

    def _usable(self, slot: int, ts: float) -> bool:
        last = self._last_ts[slot]
        return (last == last and ts - last <= self._config.stale_s
                and last - self._first_ts[slot] >= self._config.warmup_s)

    @staticmethod
    def _detection(reading: Reading, now: float, *, firing: bool, message: str) -> Detection:
        return Detection(ts=now, device_id=reading.device_id, site=reading.site,
                         hazard=reading.metric + DRIFT_SUFFIX, kind=DetectionKind.HEALTH,
                         severity=_SEVERITY, firing=firing, metric=reading.metric,
                         value=reading.value, message=message, reading_ts=reading.ts,
                         drill=reading.drill)

    def _slots(self, base: int) -> range:
        device_type = self._rules[base].device_type
        return range(base, base + len(self._columns[device_type]))

    def firing(self, base: int | None) -> frozenset[str]:
        """The ``<metric>_drift`` hazards firing on one device."""
        if base is None:
            return frozenset()
        return frozenset(self._rules[s].metric + DRIFT_SUFFIX
                         for s in self._slots(base) if self._firing[s])

    def dump(self, base: int | None) -> tuple[tuple[object, ...], ...]:
        """Plain state: ``(metric, level, first ts, last ts, since, next check, firing)``
        per watched metric of one device."""
        if base is None:
            return ()
        return tuple((self._rules[s].metric, self._level[s], self._first_ts[s],
                      self._last_ts[s], self._since[s], self._next_check[s],
                      bool(self._firing[s])) for s in self._slots(base))

    def load(self, base: int | None, saved: Sequence[object]) -> None:
        """Restore what ``dump`` gave; metrics no longer watched are dropped."""
        if base is None:
            return
        self.reset(base)
        by_metric = {self._rules[s].metric: s for s in self._slots(base)}
        for item in saved:
            # A wrong shape raises here, and the engine's restore resets the device.
            metric, *numbers, firing = cast(tuple[object, ...], item)
            slot = by_metric.get(str(metric))
            if slot is None:
                continue
            level, first_ts, last_ts, since, next_check = (
                float(n) for n in cast(list[float], numbers))
            self._level[slot] = level
            self._first_ts[slot] = first_ts
            self._last_ts[slot] = last_ts
            self._since[slot] = since
            self._next_check[slot] = next_check
            self._firing[slot] = 1 if firing else 0

    def reset(self, base: int | None) -> None:
        """Forget one device's levels (its partition moved, or a restore failed)."""
        if base is None:
            return
        for s in self._slots(base):
            self._level[s] = self._first_ts[s] = self._last_ts[s] = _NAN
            self._since[s] = self._next_check[s] = _NAN
            self._firing[s] = 0


def _label(metric: str) -> str:
    description = METRICS_BY_KEY.get(metric)
    return description.label_zh if description else metric


def _unit(metric: str) -> str:
    description = METRICS_BY_KEY.get(metric)
    return f" {description.unit}" if description and description.unit else ""

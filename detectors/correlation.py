"""Correlation: findings of several devices in one place, read together (rules are config data).

A ``CorrelationRule`` says which hazards, in which scope (room, building, site), from how
many devices, within what window, add up to a stronger finding: smoke with a fast
temperature rise in one room is a fire; two gas alarms in one building is a spreading
leak; many devices of one building offline at once is one power cut, not many faults.

The result is one more ``Detection`` (on the device whose finding completed the rule),
cleared when the last contributing finding clears. A ``suppress`` rule also swallows
its members' own findings while it fires, and clears the ones already sent, so the
duty officer sees one alert for the outage instead of one per device.

A worker sees only the devices of its partitions, so a rule correlates the devices
that one worker owns; with several workers, key the bus by building to keep a
building's devices together.

The live groups are state like any detector's and follow their devices: ``dump`` gives
one device's memberships (its live findings, whether a result was reported on it,
whether its own finding went out), ``load`` puts them back after a restart or on the
worker that gains the device's partition, ``forget`` drops them when it moves away.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from config.settings import CorrelationRule
from shouwang.models import Detection, DetectionKind, Device, Severity

__all__ = ["Correlator"]


@dataclass(slots=True, kw_only=True)
class _Group:
    """One rule's live findings in one place."""

    active: dict[tuple[str, str], float] = field(default_factory=dict)  # (device, hazard) -> ts
    fired_on: str | None = None   # device the result was reported on, while it fires
    published: set[str] = field(default_factory=set)  # members whose own finding went out


def _scope_key(rule: CorrelationRule, device: Device) -> tuple[str, ...] | None:
    where = device.location
    if rule.scope == "site":
        return (device.site,)
    if not where.building:
        return None  # without a building there is no "same building" to speak of
    if rule.scope == "building":
        return (device.site, where.building)
    if not where.room:
        return None
    return (device.site, where.building, where.unit, where.floor, where.room)


class Correlator:
    """Applies every correlation rule to a stream of detections.

    Parameters
    ----------
    rules
        The configured rules.
    devices
        The registry, for each device's place.

    Examples
    --------
    >>> from config.settings import CorrelationRule
    >>> from shouwang.catalog import DeviceType
    >>> from shouwang.models import Location
    >>> rule = CorrelationRule(name="gas_spread", hazards=("gas",), min_devices=2,
    ...                        result_hazard="gas_spread", message="多个燃气探测器报警")
    >>> here = Location(building="3号楼")
    >>> devices = {d: Device(id=d, type=DeviceType.GAS, site="s1", location=here)
    ...            for d in ("g1", "g2")}
    >>> correlator = Correlator([rule], devices)
    >>> def gas(device_id, firing=True):
    ...     return Detection(ts=0.0, device_id=device_id, site="s1", hazard="gas",
    ...                      kind=DetectionKind.HAZARD, severity=Severity.ORANGE,
    ...                      firing=firing, level=1 if firing else 0)
    >>> [d.hazard for d in correlator.process([gas("g1")], now=10.0)]
    ['gas']
    >>> [(d.hazard, d.severity.name, d.message) for d in
    ...  correlator.process([gas("g2")], now=20.0)]
    [('gas', 'ORANGE', ''), ('gas_spread', 'RED', '3号楼：多个燃气探测器报警（2 台设备）')]
    """

    def __init__(self, rules: Sequence[CorrelationRule], devices: Mapping[str, Device]) -> None:
        self._rules = tuple(rules)
        self._devices = devices
        self._by_hazard: dict[str, tuple[int, ...]] = {}
        for index, rule in enumerate(self._rules):
            for hazard in rule.hazards:
                self._by_hazard[hazard] = (*self._by_hazard.get(hazard, ()), index)
        self._groups: dict[tuple[int, tuple[str, ...]], _Group] = {}

    def dump(self, device_id: str) -> tuple[tuple[str, str, float, bool, bool], ...]:
        """One device's part of the live groups, as plain tuples.

        ``(rule name, hazard or "", since, result reported on it, own finding sent)``
        per group it belongs to; ``""`` marks a group it is in only as the device the
        result was reported on, or whose own finding went out.
        """
        entries: list[tuple[str, str, float, bool, bool]] = []
        for (index, _), group in self._groups.items():
            name = self._rules[index].name
            fired_here = group.fired_on == device_id
            published = device_id in group.published
            hazards = [(hazard, at) for (member, hazard), at in group.active.items()
                       if member == device_id]
            for hazard, at in hazards:
                entries.append((name, hazard, at, fired_here, published))
            if not hazards and (fired_here or published):
                entries.append((name, "", math.nan, fired_here, published))
        return tuple(sorted(entries, key=lambda e: (e[0], e[1])))

    def load(self, device_id: str, entries: Sequence[tuple[object, ...]]) -> None:
        """Put back what ``dump`` gave; rules renamed away or a device moved elsewhere
        are skipped (a group re-forms from fresh findings)."""
        self.forget(device_id)
        device = self._devices.get(device_id)
        if device is None:
            return
        index_of = {rule.name: i for i, rule in enumerate(self._rules)}
        for entry in entries:
            name, hazard, at, fired_here, published = entry
            index = index_of.get(str(name))
            if index is None:
                continue
            scope = _scope_key(self._rules[index], device)
            if scope is None:
                continue
            group = self._groups.setdefault((index, scope), _Group())
            if hazard:
                group.active[(device_id, str(hazard))] = float(at)  # type: ignore[arg-type]
            if fired_here and group.fired_on is None:
                group.fired_on = device_id
            if published:
                group.published.add(device_id)
            if not group.active and group.fired_on is None and not group.published:
                del self._groups[(index, scope)]

    def forget(self, device_id: str) -> None:
        """Drop one device from every group (its partition moved to another worker)."""
        for key, group in list(self._groups.items()):
            for member in [m for m in group.active if m[0] == device_id]:
                del group.active[member]
            group.published.discard(device_id)
            if group.fired_on == device_id and not group.active:
                group.fired_on = None
            if not group.active and group.fired_on is None:
                del self._groups[key]

    def process(self, found: list[Detection], now: float) -> list[Detection]:
        """The detections to publish: ``found`` less suppressed ones, plus results."""
        if not self._rules:
            return found
        out: list[Detection] = []
        by_hazard = self._by_hazard
        for detection in found:
            indexes = by_hazard.get(detection.hazard)
            device = self._devices.get(detection.device_id)
            if indexes is None or device is None:
                out.append(detection)
                continue
            keep = True
            extra: list[Detection] = []
            for index in indexes:
                keep &= self._apply(index, device, detection, now, out, extra)
            if keep:
                out.append(detection)
            out.extend(extra)
        return out

    def _apply(self, index: int, device: Device, detection: Detection, now: float,
               out: list[Detection], extra: list[Detection]) -> bool:
        """Update one rule's group; False if the detection is to be swallowed.

        ``out`` is what this batch publishes so far; results go to ``extra``.
        """
        rule = self._rules[index]
        scope = _scope_key(rule, device)
        if scope is None:
            return True
        key = (index, scope)
        group = self._groups.get(key)
        if group is None:
            if not detection.firing:
                return True
            group = self._groups[key] = _Group()
        member = (detection.device_id, detection.hazard)
        if detection.firing:
            group.active[member] = now
        else:
            group.active.pop(member, None)
        swallowed = rule.suppress and group.fired_on is not None
        if group.fired_on is None and detection.firing and self._satisfied(rule, group, now):
            group.fired_on = detection.device_id
            extra.append(self._result(rule, device, detection, group, now, firing=True))
            if rule.suppress:
                swallowed = True
                self._explain(rule, group, detection, now, out, extra)
        elif group.fired_on is not None and not group.active:
            swallowed = rule.suppress
            fired_on = self._devices[group.fired_on]
            extra.append(self._result(rule, fired_on, detection, group, now, firing=False))
            group.fired_on = None
        if not swallowed and detection.firing:
            group.published.add(detection.device_id)
        elif not detection.firing:
            group.published.discard(detection.device_id)
        if not group.active and group.fired_on is None:
            del self._groups[key]
        return not swallowed

    @staticmethod
    def _satisfied(rule: CorrelationRule, group: _Group, now: float) -> bool:
        recent = [(device_id, hazard) for (device_id, hazard), at in group.active.items()
                  if now - at <= rule.window_s]
        return (set(rule.hazards) <= {hazard for _, hazard in recent}
                and len({device_id for device_id, _ in recent}) >= rule.min_devices)

    def _explain(self, rule: CorrelationRule, group: _Group, trigger: Detection, now: float,
                 out: list[Detection], extra: list[Detection]) -> None:
        """Take back members' findings: drop those of this batch, clear those sent before."""
        members = {m for m in group.active if m[0] in group.published}
        kept = [d for d in out if not (d.firing and (d.device_id, d.hazard) in members)]
        unsent = {(d.device_id, d.hazard) for d in out} - {(d.device_id, d.hazard) for d in kept}
        out[:] = kept
        for device_id, hazard in sorted(members - unsent):
            device = self._devices[device_id]
            extra.append(Detection(
                ts=now, device_id=device_id, site=device.site, hazard=hazard,
                kind=trigger.kind, severity=trigger.severity, firing=False,
                metric=trigger.metric, message=f"已归并到「{rule.message}」告警",
                reading_ts=trigger.reading_ts, drill=trigger.drill))
        group.published.clear()

    @staticmethod
    def _result(rule: CorrelationRule, device: Device, trigger: Detection, group: _Group,
                now: float, *, firing: bool) -> Detection:
        where = device.location.describe() or device.site
        count = len({device_id for device_id, _ in group.active})
        message = (f"{where}：{rule.message}（{count} 台设备）" if firing
                   else f"{where}：{rule.message}，已解除")
        return Detection(
            ts=now, device_id=device.id, site=device.site, hazard=rule.result_hazard,
            kind=DetectionKind(rule.kind), severity=Severity[rule.severity.upper()],
            firing=firing, metric=trigger.metric, message=message,
            reading_ts=trigger.reading_ts, drill=trigger.drill)

"""Learned anomaly in the stream: one streaming detector per device metric, as episodes.

Each watched metric of a device gets a detector from the registry (``EWMAScore`` by
default: a weighted mean and variance, the only one small enough for every device) behind
a ``ThresholdFilter``, which does not learn the points it flags, so an ongoing incident
does not become the new normal. The first flagged reading opens an episode: one
``ANOMALY`` detection (``{metric}_anomaly``, BLUE). ``clear_after`` calm readings in a row
close it with one more. In between nothing is emitted.

A change that lasts is the new normal, not an incident: after ``adopt_after`` readings
in one episode the metric's detector is replaced by a fresh one that learns from the
current reading on, and the episode closes ("已适应新水平"). Without that a protected
filter never learns the new level and the episode would stay open until the value
came back, which after a sensor swap or a new appliance is never.

A device's state is one list, ``[filter, open, length, filter, open, length, ...]`` by
metric slot (the slot table is shared per device type): ``filter`` is built on the
metric's first reading, ``open`` is -1 outside an episode, else the calm readings seen
since the last flagged one, and ``length`` the readings since the episode opened. No
per-device object beyond that list, which is what keeps it near 200 bytes a metric at
100,000 devices.
"""

from __future__ import annotations

import io
import logging
import pickle
from collections.abc import Mapping
from typing import cast

from config.settings import AnomalySettings
from detectors.anomaly import ThresholdFilter, make_detector
from shouwang.catalog import METRICS_BY_KEY, DeviceType, metrics_for
from shouwang.models import Detection, DetectionKind, Reading, Severity

__all__ = ["ANOMALY_SUFFIX", "AnomalyBook", "DeviceAnomaly"]

log = logging.getLogger(__name__)

ANOMALY_SUFFIX = "_anomaly"  # hazard = metric + suffix, so each metric has its own alert
_SEVERITY = Severity.BLUE    # unusual, not dangerous by itself: the hazard rules judge danger
_CLOSED = -1

# A device's state: detector filters and episode counters interleaved by metric slot.
DeviceAnomaly = list[object]


class _DetectorUnpickler(pickle.Unpickler):
    """Loads a saved detector: only the anomaly package's classes and deques, nothing else."""

    def find_class(self, module: str, name: str) -> type:
        if module.startswith("detectors.anomaly.") or (module, name) == ("collections",
                                                                          "deque"):
            found: type = super().find_class(module, name)
            return found
        raise pickle.UnpicklingError(f"detector state refers to {module}.{name}")


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


class AnomalyBook:
    """Compiles which metrics are watched per device type and runs the episodes.

    Parameters
    ----------
    config
        The ``anomaly`` section.

    Examples
    --------
    >>> import random
    >>> from config.settings import AnomalySettings
    >>> book = AnomalyBook(AnomalySettings())
    >>> state = book.for_device(DeviceType.GAS)
    >>> rng, out = random.Random(1), []
    >>> for i in range(120):  # an hour of clean air, then a jump that holds
    ...     value = round(0.5 + rng.gauss(0.0, 0.1) + (12.0 if i >= 100 else 0.0), 2)
    ...     book.observe(state, DeviceType.GAS, Reading(
    ...         ts=30.0 * i, device_id="g1", site="s1", metric="lel", value=value), 0.0, out)
    >>> [(d.hazard, d.kind.value, d.firing, d.reading_ts) for d in out]
    [('lel_anomaly', 'anomaly', True, 3000.0)]
    """

    def __init__(self, config: AnomalySettings) -> None:
        self._config = config
        self._slots: dict[DeviceType, Mapping[str, int]] = {}

    def for_device(self, device_type: DeviceType) -> DeviceAnomaly | None:
        """Fresh state for one device, or None when none of its metrics is watched."""
        if not self._config.enabled:
            return None
        slots = self._slots_of(device_type)
        return [None, _CLOSED, 0] * len(slots) if slots else None

    def _slots_of(self, device_type: DeviceType) -> Mapping[str, int]:
        slots = self._slots.get(device_type)
        if slots is None:
            watched = set(self._config.metrics)
            keys = [m.key for m in metrics_for(device_type) if m.key in watched]
            slots = self._slots[device_type] = {key: 3 * i for i, key in enumerate(keys)}
        return slots

    def _filter(self) -> ThresholdFilter:
        return ThresholdFilter(make_detector(self._config.detector),
                               threshold=self._config.threshold)

    def observe(self, state: DeviceAnomaly, device_type: DeviceType, reading: Reading,
                now: float, out: list[Detection]) -> None:
        """Score and learn one telemetry reading; append a detection if an episode opened
        or closed."""
        slot = self._slots[device_type].get(reading.metric, -1)
        if slot < 0:
            return
        flt = state[slot]
        if flt is None:
            flt = state[slot] = self._filter()
        x = {"value": reading.value, "ts": reading.ts}
        score = flt.score_and_learn(x)  # type: ignore[attr-defined]  # a ThresholdFilter
        calm: int = state[slot + 1]  # type: ignore[assignment]  # the slot after a filter
        if score >= self._config.threshold:
            if calm == _CLOSED:
                out.append(self._detection(reading, now, score, firing=True))
                state[slot + 2] = 0
            state[slot + 1] = calm = 0
        elif calm != _CLOSED:
            calm += 1
            if calm >= self._config.clear_after:
                state[slot + 1], state[slot + 2] = _CLOSED, 0
                out.append(self._detection(reading, now, score, firing=False))
                return
            state[slot + 1] = calm
        if calm == _CLOSED:
            return
        length: int = state[slot + 2] + 1  # type: ignore[operator]  # an int slot
        state[slot + 2] = length
        adopt_after = self._config.adopt_after
        if adopt_after and length >= adopt_after:
            # The shift has lasted: learn it as the new normal from this reading on.
            fresh = state[slot] = self._filter()
            fresh.detector.learn_one(x)
            state[slot + 1], state[slot + 2] = _CLOSED, 0
            out.append(self._detection(reading, now, score, firing=False, adopted=length))

    def _detection(self, reading: Reading, now: float, score: float, *,
                   firing: bool, adopted: int = 0) -> Detection:
        description = METRICS_BY_KEY.get(reading.metric)
        label = description.label_zh if description else reading.metric
        unit = f" {description.unit}" if description and description.unit else ""
        head = f"{label} {_number(reading.value)}{unit}"
        if firing:
            message = f"{head}，明显偏离该设备的常态（异常分数 {score:.2f}）"
        elif adopted:
            message = f"{head}，新水平已持续 {adopted} 次读数，已适应新水平"
        else:
            message = f"{head}，已恢复常态"
        return Detection(ts=now, device_id=reading.device_id, site=reading.site,
                         hazard=reading.metric + ANOMALY_SUFFIX, kind=DetectionKind.ANOMALY,
                         severity=_SEVERITY, firing=firing, metric=reading.metric,
                         value=reading.value, level=0, message=message,
                         reading_ts=reading.ts, drill=reading.drill)

    def firing(self, state: DeviceAnomaly | None, device_type: DeviceType) -> frozenset[str]:
        """The ``{metric}_anomaly`` hazards with an open episode."""
        if state is None:
            return frozenset()
        return frozenset(metric + ANOMALY_SUFFIX
                         for metric, slot in self._slots_of(device_type).items()
                         if state[slot + 1] != _CLOSED)

    def dump(self, state: DeviceAnomaly | None, device_type: DeviceType) -> tuple[object, ...]:
        """Plain state: ``(metric, open, detector pickle or None, episode length)`` per
        watched metric."""
        if state is None:
            return ()
        return tuple(
            (metric, state[slot + 1],
             None if state[slot] is None else pickle.dumps(
                 state[slot].detector,  # type: ignore[attr-defined]  # a ThresholdFilter
                 protocol=pickle.HIGHEST_PROTOCOL),
             state[slot + 2])
            for metric, slot in self._slots_of(device_type).items())

    def load(self, state: DeviceAnomaly | None, device_type: DeviceType,
             saved: tuple[object, ...]) -> None:
        """Restore what ``dump`` saved; metrics no longer watched are dropped, and a
        detector that cannot be loaded (another detector configured) starts afresh."""
        if state is None:
            return
        slots = self._slots_of(device_type)
        for item in saved:
            # A wrong shape raises here, and the engine's restore resets the device.
            # Saved before episodes had a length: three items, counted from here.
            metric, calm, blob, *length = cast(tuple[str, int, bytes | None, int], item)
            assert isinstance(metric, str) and isinstance(blob, bytes | None)
            slot = slots.get(metric)
            if slot is None:
                continue
            state[slot + 1] = int(calm)
            state[slot + 2] = int(length[0]) if length else 0
            if blob is None:
                continue
            try:
                detector = _DetectorUnpickler(io.BytesIO(blob)).load()
            except (pickle.UnpicklingError, AttributeError, EOFError, ImportError, TypeError,
                    ValueError) as err:
                log.warning("saved %s anomaly detector unusable, starting afresh: %s",
                            metric, err)
                state[slot + 1] = _CLOSED
                continue
            fresh = self._filter()
            if type(detector) is not type(fresh.detector):
                state[slot + 1] = _CLOSED
                continue
            fresh.detector = detector
            state[slot] = fresh

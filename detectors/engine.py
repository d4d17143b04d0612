"""The detector engine: readings in, detections out, all state in memory per device.

This is the hot path of a detector worker. Per reading it does one dict lookup for the
device (skipped while consecutive readings share a device, as a bus message's do), one
for the metric's rules, and a few float comparisons; it allocates only when something
fires or clears.
"""

from __future__ import annotations

import io
import logging
import pickle
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from config.settings import DetectorSettings
from detectors.correlation import Correlator
from detectors.events import event_detection
from detectors.forecast import DeviceTrends, TrendBook
from detectors.health import DeviceHealth, HealthBook
from detectors.learned import AnomalyBook, DeviceAnomaly
from detectors.offline import Presence
from detectors.threshold import DeviceThresholds, ThresholdBook
from shouwang.models import Detection, Device, Reading, ReadingKind

__all__ = ["DetectorEngine"]

log = logging.getLogger(__name__)

_TELEMETRY = ReadingKind.TELEMETRY
_EVENT = ReadingKind.EVENT


_STATE_VERSION = 2  # 2 added learned anomaly; a version 1 snapshot restores without it


class _DeviceState:
    """Everything the engine remembers about one device."""

    __slots__ = ("anomaly", "device", "health", "presence", "thresholds", "trends")

    def __init__(self, device: Device, thresholds: DeviceThresholds, presence: Presence,
                 trends: DeviceTrends | None, health: DeviceHealth,
                 anomaly: DeviceAnomaly | None) -> None:
        self.device = device
        self.thresholds = thresholds
        self.presence = presence
        self.trends = trends
        self.health = health
        self.anomaly = anomaly


class _PlainUnpickler(pickle.Unpickler):
    """Snapshots hold only tuples, lists, numbers, strings: refuse anything that names a class."""

    def find_class(self, module: str, name: str) -> type:
        raise pickle.UnpicklingError(f"snapshot refers to {module}.{name}")


class DetectorEngine:
    """Runs every detector of every registered device over a stream of readings.

    Parameters
    ----------
    settings
        The ``detectors`` section: threshold rules, the offline window, forecasts,
        health checks, correlations and learned anomaly.
    devices
        The registry, by device id. Readings of other devices are counted and ignored
        (ingest rejects them already; a registry change restarts the worker for now).
    clock
        Stamps each detection's ``ts``; read once per ``process`` call.
    started_at
        When the worker started: a device not heard from since counts as heard then.
        ``None`` takes the ``now`` of the first ``tick``.

    Examples
    --------
    >>> from config.settings import DetectorSettings
    >>> from shouwang.catalog import DeviceType
    >>> engine = DetectorEngine(
    ...     DetectorSettings(), {"g1": Device(id="g1", type=DeviceType.GAS, site="s1")},
    ...     clock=lambda: 100.0)
    >>> ramp = [Reading(ts=float(t), device_id="g1", site="s1", metric="lel", value=v)
    ...         for t, v in enumerate((5, 26, 24, 52, 12))]
    >>> [(d.level, d.firing, d.severity.name) for d in engine.process(ramp)]
    [(1, True, 'ORANGE'), (2, True, 'RED'), (0, False, 'RED')]
    """

    def __init__(self, settings: DetectorSettings, devices: Mapping[str, Device], *,
                 clock: Callable[[], float] = time.time,
                 started_at: float | None = None) -> None:
        self._clock = clock
        self._started_at = started_at
        self._book = ThresholdBook(settings.thresholds)
        self._trend_book = TrendBook(settings.forecast, settings.rate_of_rise)
        self._health_book = HealthBook(settings.health)
        self._anomaly_book = AnomalyBook(settings.anomaly)
        self._after = settings.offline_after_intervals
        self._states = {device_id: self._fresh(device) for device_id, device in devices.items()}
        self._correlator = (Correlator(settings.correlations, devices)
                            if settings.correlations else None)
        self.readings_seen = 0
        self.unknown_device_readings = 0

    def process(self, readings: Sequence[Reading]) -> list[Detection]:
        """Feed readings in order; returns what fired or cleared, in reading order."""
        out: list[Detection] = []
        now = self._clock()
        states = self._states
        current_id: str | None = None
        state: _DeviceState | None = None
        for reading in readings:
            if reading.device_id != current_id:
                current_id = reading.device_id
                state = states.get(current_id)
            if state is None:
                self.unknown_device_readings += 1
                continue
            state.presence.observe(reading, now, out)
            kind = reading.kind
            if kind is _TELEMETRY:
                thresholds = state.thresholds
                thresholds.observe(reading, now, out)
                trends = state.trends
                if trends is not None:
                    trends.observe(reading, now, out, thresholds.live_levels)
                state.health.observe(reading, out, now)
                anomaly = state.anomaly
                if anomaly is not None:
                    self._anomaly_book.observe(anomaly, state.device.type, reading, now, out)
            elif kind is _EVENT:
                state.health.observe(reading, out, now)
                found = event_detection(reading, now)
                if found is not None:
                    out.append(found)
        self.readings_seen += len(readings)
        if out and self._correlator is not None:
            return self._correlator.process(out, now)
        return out

    def tick(self, now: float, devices: Iterable[str] | None = None) -> list[Detection]:
        """Periodic checks that no reading triggers: devices gone silent.

        ``devices`` limits the check to the devices this worker owns (default: all).
        """
        if self._started_at is None:
            self._started_at = now
        started_at = self._started_at
        out = []
        states = self._states
        chosen = (states.values() if devices is None
                  else [states[d] for d in devices if d in states])
        for state in chosen:
            found = state.presence.check(now, started_at=started_at)
            if found is not None:
                out.append(found)
        if out and self._correlator is not None:
            return self._correlator.process(out, now)
        return out

    def levels(self, device_id: str) -> dict[str, int]:
        """Current threshold level per hazard of one device (the highest of its rules)."""
        state = self._states[device_id]
        hazards = [r.hazard for r in self._book.rules_for(state.device.type)]
        result: dict[str, int] = {}
        for hazard, level in zip(hazards, state.thresholds.levels(), strict=True):
            result[hazard] = max(result.get(hazard, 0), level)
        return result

    def is_offline(self, device_id: str) -> bool:
        return self._states[device_id].presence.offline

    def health_firing(self, device_id: str) -> frozenset[str]:
        """Health problems currently reported for one device."""
        return self._states[device_id].health.firing()

    def anomaly_firing(self, device_id: str) -> frozenset[str]:
        """``{metric}_anomaly`` hazards of one device with an open episode."""
        state = self._states[device_id]
        return self._anomaly_book.firing(state.anomaly, state.device.type)

    def knows(self, device_id: str) -> bool:
        return device_id in self._states

    def snapshot(self, device_id: str) -> bytes:
        """One device's whole detector state as bytes (see ``restore``)."""
        state = self._states[device_id]
        presence = state.presence
        plain = (_STATE_VERSION, presence.last_heard, presence.offline,
                 state.thresholds.levels(),
                 None if state.trends is None else state.trends.dump(), state.health.dump(),
                 self._anomaly_book.dump(state.anomaly, state.device.type))
        return pickle.dumps(plain, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, device_id: str, blob: bytes) -> bool:
        """Replace one device's state with a snapshot; False (state reset) if unusable.

        A snapshot from another version or configuration is dropped rather than
        half-applied: fresh state re-learns in one window, a wrong one could hide an alarm.
        """
        state = self._states.get(device_id)
        if state is None:
            return False
        fresh = self._fresh(state.device)
        try:
            plain = _PlainUnpickler(io.BytesIO(blob)).load()
            version, *rest = plain
            if version == 1:  # saved before learned anomaly: that part starts afresh
                rest.append(())
            elif version != _STATE_VERSION:
                raise ValueError(f"snapshot version {version}")
            last_heard, offline, levels, trends, health, anomaly = rest
            fresh.presence.last_heard = float(last_heard)
            fresh.presence.offline = bool(offline)
            fresh.thresholds.load(tuple(levels))
            if trends is not None and fresh.trends is not None:
                fresh.trends.load(trends)
            fresh.health.load(health)
            self._anomaly_book.load(fresh.anomaly, state.device.type, anomaly)
        except (pickle.UnpicklingError, ValueError, TypeError, AssertionError, EOFError) as err:
            log.warning("detector snapshot of device_id=%s unusable, starting afresh: %s",
                        device_id, err)
            self._states[device_id] = self._fresh(state.device)
            return False
        self._states[device_id] = fresh
        return True

    def reset(self, device_id: str) -> None:
        """Forget one device's state (its partition moved to another worker)."""
        state = self._states.get(device_id)
        if state is not None:
            self._states[device_id] = self._fresh(state.device)

    def _fresh(self, device: Device) -> _DeviceState:
        thresholds = self._book.for_device(device)
        return _DeviceState(device, thresholds, Presence(device, after_intervals=self._after),
                            self._trend_book.for_device(device.type, thresholds),
                            self._health_book.for_device(device.type),
                            self._anomaly_book.for_device(device.type))

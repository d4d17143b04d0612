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
from detectors.anomaly.type_forest import TypeForest
from detectors.correlation import Correlator
from detectors.drift import DriftWatch
from detectors.events import event_detection
from detectors.forecast import DeviceTrends, TrendBook
from detectors.health import DeviceHealth, HealthBook
from detectors.learned import AnomalyBook, DeviceAnomaly
from detectors.offline import Presence
from detectors.threshold import DeviceThresholds, ThresholdBook
from detectors.typed import TypeModels
from shouwang.models import Detection, Device, Reading, ReadingKind

__all__ = ["DetectorEngine"]

log = logging.getLogger(__name__)

_TELEMETRY = ReadingKind.TELEMETRY
_EVENT = ReadingKind.EVENT
_STATUS = ReadingKind.STATUS
# A reading this much older than the newest its device sent is a replayed capture, not
# reordering (MQTT keeps one device's order): stored once by the store, never run again
# (an old alarm would reopen a resolved alert, an old reading would fake presence).
_REPLAY_WINDOW_S = 300.0


# 2 added learned anomaly, 3 correlation memberships, drift and the type-model episode,
# 4 the newest reading's ts (the replay window); an older snapshot restores without the
# parts it lacks.
_STATE_VERSION = 4


class _DeviceState:
    """Everything the engine remembers about one device."""

    __slots__ = ("anomaly", "device", "drift", "health", "newest_ts", "presence", "thresholds",
                 "trends", "typed")

    def __init__(self, device: Device, thresholds: DeviceThresholds, presence: Presence,
                 trends: DeviceTrends | None, health: DeviceHealth,
                 anomaly: DeviceAnomaly | None, drift: int | None,
                 typed: int | None) -> None:
        self.device = device
        self.thresholds = thresholds
        self.presence = presence
        self.trends = trends
        self.health = health
        self.anomaly = anomaly
        self.drift = drift    # first slot in the drift watch's columns
        self.typed = typed    # row in the type models' arrays
        self.newest_ts = float("-inf")  # newest telemetry/event ts: the replay window


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
    defer_models
        Leave per-type model scoring to ``score_models`` (a worker calls it once per bus
        batch, so a whole batch is scored in one vectorised call); by default each
        ``process`` call scores its own messages.

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
                 started_at: float | None = None, defer_models: bool = False) -> None:
        self._clock = clock
        self._started_at = started_at
        self._defer_models = defer_models
        self._book = ThresholdBook(settings.thresholds)
        self._trend_book = TrendBook(settings.forecast, settings.rate_of_rise)
        self._health_book = HealthBook(settings.health)
        self._anomaly_book = AnomalyBook(settings.anomaly)
        self._after = settings.offline_after_intervals
        self._drift = (DriftWatch(settings.drift, devices)
                       if settings.drift.enabled and settings.drift.rules else None)
        self._typed = TypeModels(settings.training, devices)
        # Each device's place in the shared drift and model columns, handed out once.
        drift_slots = self._drift.take_slots() if self._drift is not None else {}
        typed_rows = self._typed.take_rows()
        self._states = {device_id: self._fresh(device, drift_slots.get(device_id),
                                               typed_rows.get(device_id))
                        for device_id, device in devices.items()}
        self._correlator = (Correlator(settings.correlations, devices)
                            if settings.correlations else None)
        self.readings_seen = 0
        self.unknown_device_readings = 0
        self.replayed_readings = 0

    def process(self, readings: Sequence[Reading]) -> list[Detection]:
        """Feed readings in order; returns what fired or cleared, in reading order."""
        out: list[Detection] = []
        now = self._clock()
        states = self._states
        current_id: str | None = None
        state: _DeviceState | None = None
        drift = self._drift
        drift_metrics = drift.metrics if drift is not None else frozenset()
        typed = self._typed if self._typed.active else None
        for reading in readings:
            if reading.device_id != current_id:
                current_id = reading.device_id
                state = states.get(current_id)
            if state is None:
                self.unknown_device_readings += 1
                continue
            if reading.kind is not _STATUS:
                if reading.ts < state.newest_ts - _REPLAY_WINDOW_S:
                    self.replayed_readings += 1
                    continue
                if reading.ts > state.newest_ts:
                    state.newest_ts = reading.ts
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
                if reading.metric in drift_metrics and state.drift is not None:
                    drift.observe(state.drift, reading,  # type: ignore[union-attr]  # set above
                                  thresholds.live_levels, now, out)
                if typed is not None and state.typed is not None:
                    typed.observe(state.device.type, state.typed, reading)
            elif kind is _EVENT:
                state.health.observe(reading, out, now)
                found = event_detection(reading, now)
                if found is not None:
                    out.append(found)
        self.readings_seen += len(readings)
        if typed is not None and not self._defer_models:
            typed.finish(now, out)  # scores the batch's messages at once
        if out and self._correlator is not None:
            return self._correlator.process(out, now)
        return out

    def score_models(self) -> list[Detection]:
        """Score the messages held since the last call with the per-type models, in one
        vectorised call per type (see ``defer_models``)."""
        if not self._typed.active:
            return []
        out: list[Detection] = []
        now = self._clock()
        self._typed.finish(now, out)
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
        state = self._states[device_id]
        found = state.health.firing()
        if self._drift is not None:
            found |= self._drift.firing(state.drift)
        return found

    def install_models(self, models: Iterable[TypeForest]) -> None:
        """Score with these per-type models from now on (newer versions replace older)."""
        for model in models:
            self._typed.install(model)

    def model_versions(self) -> dict[str, int]:
        """The installed per-type model version by device type."""
        return self._typed.versions()

    def model_firing(self, device_id: str) -> bool:
        """Whether the device's type model has an open episode."""
        state = self._states[device_id]
        return self._typed.firing(state.device.type, state.typed)

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
        correlation = () if self._correlator is None else self._correlator.dump(device_id)
        drift = () if self._drift is None else self._drift.dump(state.drift)
        plain = (_STATE_VERSION, presence.last_heard, presence.offline,
                 state.thresholds.levels(),
                 None if state.trends is None else state.trends.dump(), state.health.dump(),
                 correlation, drift, self._typed.dump(state.device.type, state.typed),
                 state.newest_ts, self._anomaly_book.dump(state.anomaly, state.device.type))
        return pickle.dumps(plain, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, device_id: str, blob: bytes) -> bool:
        """Replace one device's state with a snapshot; False (state reset) if unusable.

        A snapshot from another version or configuration is dropped rather than
        half-applied: fresh state re-learns in one window, a wrong one could hide an alarm.
        """
        state = self._states.get(device_id)
        if state is None:
            return False
        fresh = self._fresh(state.device, state.drift, state.typed)
        try:
            plain = _PlainUnpickler(io.BytesIO(blob)).load()
            version, *rest = plain
            if version == 1:  # saved before learned anomaly: that part starts afresh
                rest.append(())
            if version in (1, 2):  # saved before correlation, drift and type models
                rest[5:5] = [(), (), ()]
            if version in (1, 2, 3):  # saved before the replay window: re-learnt
                rest.insert(-1, float("-inf"))
            elif version != _STATE_VERSION:
                raise ValueError(f"snapshot version {version}")
            (last_heard, offline, levels, trends, health, correlation, drift, typed,
             newest_ts, anomaly) = rest
            fresh.newest_ts = float(newest_ts)
            fresh.presence.last_heard = float(last_heard)
            fresh.presence.offline = bool(offline)
            fresh.thresholds.load(tuple(levels))
            if trends is not None and fresh.trends is not None:
                fresh.trends.load(trends)
            fresh.health.load(health)
            if self._drift is not None:
                self._drift.load(fresh.drift, drift)
            self._typed.load(state.device.type, fresh.typed, typed)
            self._anomaly_book.load(fresh.anomaly, state.device.type, anomaly)
            if self._correlator is not None:
                self._correlator.load(device_id, correlation)
        except (pickle.UnpicklingError, ValueError, TypeError, AssertionError, EOFError) as err:
            log.warning("detector snapshot of device_id=%s unusable, starting afresh: %s",
                        device_id, err)
            self._states[device_id] = self._fresh(state.device, state.drift, state.typed)
            if self._correlator is not None:
                self._correlator.forget(device_id)
            return False
        self._states[device_id] = fresh
        return True

    def reset(self, device_id: str) -> None:
        """Forget one device's state (its partition moved to another worker)."""
        state = self._states.get(device_id)
        if state is not None:
            self._states[device_id] = self._fresh(state.device, state.drift, state.typed)
            if self._correlator is not None:
                self._correlator.forget(device_id)

    def _fresh(self, device: Device, drift: int | None, typed: int | None) -> _DeviceState:
        """New state; the device's slots in the shared drift and model columns reset too."""
        thresholds = self._book.for_device(device)
        if self._drift is not None:
            self._drift.reset(drift)
        self._typed.reset(device.type, typed)
        return _DeviceState(device, thresholds, Presence(device, after_intervals=self._after),
                            self._trend_book.for_device(device.type, thresholds),
                            self._health_book.for_device(device.type),
                            self._anomaly_book.for_device(device.type), drift, typed)

"""The detector engine: readings in, detections out, all state in memory per device.

This is the hot path of a detector worker. Per reading it does one dict lookup for the
device (skipped while consecutive readings share a device, as a bus message's do), one
for the metric's rules, and a few float comparisons; it allocates only when something
fires or clears.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from config.settings import DetectorSettings
from detectors.events import event_detection
from detectors.offline import Presence
from detectors.threshold import DeviceThresholds, ThresholdBook
from shouwang.models import Detection, Device, Reading, ReadingKind

__all__ = ["DetectorEngine"]

_TELEMETRY = ReadingKind.TELEMETRY
_EVENT = ReadingKind.EVENT


class _DeviceState:
    """Everything the engine remembers about one device."""

    __slots__ = ("device", "presence", "thresholds")

    def __init__(self, device: Device, thresholds: DeviceThresholds, presence: Presence) -> None:
        self.device = device
        self.thresholds = thresholds
        self.presence = presence


class DetectorEngine:
    """Runs every detector of every registered device over a stream of readings.

    Parameters
    ----------
    settings
        The ``detectors`` section: threshold rules and the offline window.
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
        self._book = book = ThresholdBook(settings.thresholds)
        after = settings.offline_after_intervals
        self._states = {
            device_id: _DeviceState(device, book.for_device(device),
                                    Presence(device, after_intervals=after))
            for device_id, device in devices.items()
        }
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
                state.thresholds.observe(reading, now, out)
            elif kind is _EVENT:
                found = event_detection(reading, now)
                if found is not None:
                    out.append(found)
        self.readings_seen += len(readings)
        return out

    def tick(self, now: float) -> list[Detection]:
        """Periodic checks that no reading triggers: devices gone silent."""
        if self._started_at is None:
            self._started_at = now
        started_at = self._started_at
        out = []
        for state in self._states.values():
            found = state.presence.check(now, started_at=started_at)
            if found is not None:
                out.append(found)
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

"""Seeded signal models: plausible everyday values for every metric of every device type.

Which metrics a device reports comes from ``shouwang.catalog.metrics_for`` (the one
table); this module only knows how each behaves on an ordinary day: small noise around a
per-device baseline, slow daily cycles, cooking bumps in a kitchen's CO, electrical load
that heats the cable, a wearable's heart rate and steps that follow the resident's day.
Every value is clamped into the metric's ``valid_range``.

Randomness is one ``random.Random`` per device seeded from ``(seed, device_id)`` through
BLAKE2b, so a device's stream does not depend on which other devices exist or on Python's
per-process string hashing.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from shouwang.catalog import DeviceType, MetricDescription, metrics_for
from shouwang.models import Device
from simulators.models import SimulatedDevice

__all__ = [
    "DEFAULT_ORIGIN",
    "DeviceSignal",
    "device_rng",
    "simulated_device",
    "stable_seed",
]

log = logging.getLogger(__name__)

# Where a wearable is when neither it nor its site has coordinates (central Shanghai).
DEFAULT_ORIGIN = (31.2304, 121.4737)
_METRES_PER_DEGREE_LAT = 111_320.0
_DECIMALS = {"lat": 6, "lon": 6, "steps": 0, "alarm": 0, "rssi": 0}
_DAY_S = 86_400.0
# Meal times (local hours) when a kitchen's CO may bump from cooking.
_MEALS = ((6.5, 8.5), (11.0, 13.0), (17.0, 19.5))
_UNMODELLED: set[tuple[DeviceType, str]] = set()


def stable_seed(seed: int, device_id: str) -> int:
    """A 64-bit seed that is the same on every run, machine and Python version.

    >>> stable_seed(7, "gas-1") == stable_seed(7, "gas-1") != stable_seed(8, "gas-1")
    True
    """
    digest = hashlib.blake2b(f"{seed}\x00{device_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def device_rng(seed: int, device_id: str, stream: str = "signal") -> random.Random:
    """An independent random stream per (seed, device, purpose)."""
    return random.Random(stable_seed(seed, f"{device_id}\x00{stream}"))


def simulated_device(device: Device, seed: int) -> SimulatedDevice:
    """Seeded start offset (so a fleet does not report in the same millisecond) and seq."""
    rng = device_rng(seed, device.id, "schedule")
    return SimulatedDevice(device=device,
                           first_report_s=rng.uniform(0.0, device.report_interval_s),
                           first_seq=rng.randrange(0, 1_000_000))


def _ou(x: float, mean: float, tau_s: float, sigma: float, dt: float, rng: random.Random) -> float:
    """One Ornstein-Uhlenbeck step: noise that wanders but returns to ``mean``."""
    keep = math.exp(-dt / tau_s)
    return mean + (x - mean) * keep + rng.gauss(0.0, sigma * math.sqrt(1.0 - keep * keep))


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-0.5 * ((hour - centre) / width) ** 2)


def _electrical_load(hour: float) -> float:
    """Fraction of rated current a household board draws: night trough, evening peak."""
    return min(1.0, 0.2 + 0.3 * _bump(hour, 8.0, 1.2) + 0.2 * _bump(hour, 12.5, 1.5)
               + 0.6 * _bump(hour, 19.5, 2.0))


def _wearable_activity(hour: float) -> float:
    """0 asleep .. 1 busy, for an elderly resident's ordinary day."""
    if hour < 6.0 or hour >= 22.0:
        return 0.0
    return min(1.0, 0.15 + 0.6 * _bump(hour, 8.5, 1.5) + 0.35 * _bump(hour, 15.5, 2.5)
               + 0.4 * _bump(hour, 19.0, 1.0))


@dataclass(slots=True)
class _CookingBump:
    start_epoch_s: float
    duration_s: float
    height: float


class DeviceSignal:
    """The ordinary-day signal of one device; call ``sample`` with increasing times.

    Parameters
    ----------
    device
        The registered device; its type selects the metrics from the catalog.
    seed
        The simulation seed; the stream also depends on ``device.id``.
    origin
        ``(lat, lon)`` a wearable wanders around when the device has no coordinates.

    Examples
    --------
    >>> from shouwang.models import Device
    >>> signal = DeviceSignal(Device(id="g1", type=DeviceType.GAS, site="s"), seed=1)
    >>> sorted(signal.sample(t_s=0.0, epoch_s=1764120000.0))
    ['battery', 'co', 'lel', 'rssi']
    """

    def __init__(self, device: Device, seed: int, *,
                 origin: tuple[float, float] = DEFAULT_ORIGIN,
                 utc_offset_h: float = 8.0) -> None:
        self.device = device
        self._rng = device_rng(seed, device.id)
        self._utc_offset_s = utc_offset_h * 3600.0
        self._last_t: float | None = None
        self._dt = device.report_interval_s
        self._hour = 0.0
        self._epoch_s = 0.0
        rng = self._rng
        self._metrics: list[tuple[MetricDescription, _Behaviour]] = []
        for metric in metrics_for(device.type):
            behaviour = _BEHAVIOURS.get((device.type, metric.key)) or _BEHAVIOURS.get(
                (None, metric.key))
            if behaviour is not None:
                self._metrics.append((metric, behaviour))
            elif (device.type, metric.key) not in _UNMODELLED:
                # A metric added to the catalog without a model here: say so once, skip it.
                _UNMODELLED.add((device.type, metric.key))
                log.warning("no signal model for %s metric %s; it is not simulated",
                            device.type.value, metric.key)
        # Per-device baselines, drawn once so each device has its own character.
        self._lel_base = rng.uniform(0.2, 1.0)
        self._co_base = rng.uniform(0.5, 2.0)
        self._cooking: _CookingBump | None = None
        self._meal_seen: tuple[int, int] | None = None
        self._smoke_base = rng.uniform(0.15, 0.3)
        self._room_base = rng.uniform(21.0, 24.0)
        self._room = self._room_base
        self._level_base = rng.uniform(0.01, 0.05)
        self._water_m = self._level_base
        self._rated_a = rng.uniform(20.0, 63.0)
        self._current = 0.0
        self._leak_base = rng.uniform(10.0, 20.0)
        self._cable = rng.uniform(25.0, 28.0)
        self._hr_rest = rng.uniform(62.0, 68.0)
        self._hr_noise = 0.0
        self._spo2_base = rng.uniform(96.0, 98.0)
        self._steps = 0.0
        self._steps_day = -1
        self._stride_per_min = rng.uniform(30.0, 60.0)
        lat, lon = device.location.lat, device.location.lon
        self._home = (lat, lon) if lat is not None and lon is not None else origin
        self._offset_m = (0.0, 0.0)
        self._battery_start = rng.uniform(55.0, 100.0)
        wearable = device.type is DeviceType.WEARABLE
        # % per simulated second: a wearable lasts days, a mains-backed sensor years.
        self._drain_per_s = (rng.uniform(12.0, 25.0) / _DAY_S if wearable
                             else rng.uniform(0.5, 2.0) / (30 * _DAY_S))
        self._rssi_base = rng.uniform(-95.0, -60.0)
        self._rssi = self._rssi_base

    def sample(self, *, t_s: float, epoch_s: float) -> dict[str, float]:
        """Values at ``t_s`` simulated seconds after start; ``epoch_s`` sets the time of day."""
        if self._last_t is not None:
            self._dt = max(t_s - self._last_t, 1e-3)
        self._last_t = t_s
        self._epoch_s = epoch_s
        self._hour = ((epoch_s + self._utc_offset_s) % _DAY_S) / 3600.0
        self._advance_shared_state()
        values: dict[str, float] = {}
        for metric, behaviour in self._metrics:
            low, high = metric.valid_range
            value = min(high, max(low, behaviour(self)))
            decimals = _DECIMALS.get(metric.key, 2)
            # Whole-number metrics go out as JSON integers ("steps": 1234, not 1234.0).
            values[metric.key] = round(value, decimals) if decimals else round(value)
        return values

    def _advance_shared_state(self) -> None:
        """Move what several metrics read (load, position) once per sample, in any order."""
        if self.device.type is DeviceType.ELECTRICAL:
            load = _electrical_load(self._hour)
            self._current = max(0.0, self._rated_a * load * (1.0 + self._rng.gauss(0.0, 0.05)))
        elif self.device.type is DeviceType.WEARABLE:
            # Around home in the day, back home at night; metres north and east.
            spread = 80.0 * _wearable_activity(self._hour)
            self._offset_m = (_ou(self._offset_m[0], 0.0, 900.0, spread, self._dt, self._rng),
                              _ou(self._offset_m[1], 0.0, 900.0, spread, self._dt, self._rng))

    # ---- gas ----
    def _lel(self) -> float:
        return min(2.0, max(0.0, self._lel_base + self._rng.gauss(0.0, 0.25)))

    def _co(self) -> float:
        return self._co_base + self._cooking_ppm() + abs(self._rng.gauss(0.0, 0.4))

    def _cooking_ppm(self) -> float:
        day = int((self._epoch_s + self._utc_offset_s) // _DAY_S)
        for index, (start_h, end_h) in enumerate(_MEALS):
            if start_h <= self._hour < end_h and self._meal_seen != (day, index):
                # First sample of this meal: decide once whether and when this kitchen cooks.
                self._meal_seen = (day, index)
                if self._rng.random() < 0.6:
                    now = self._epoch_s
                    left_s = (end_h - self._hour) * 3600.0
                    self._cooking = _CookingBump(
                        start_epoch_s=now + self._rng.uniform(0.0, left_s * 0.5),
                        duration_s=self._rng.uniform(15 * 60.0, 40 * 60.0),
                        height=self._rng.uniform(2.0, 8.0))
        bump = self._cooking
        if bump is None:
            return 0.0
        into = self._epoch_s - bump.start_epoch_s
        if into < 0.0:
            return 0.0
        if into > bump.duration_s:
            self._cooking = None
            return 0.0
        return bump.height * math.sin(math.pi * into / bump.duration_s)

    # ---- smoke ----
    def _smoke(self) -> float:
        return min(0.5, max(0.1, self._smoke_base + self._rng.gauss(0.0, 0.04)))

    def _room_temperature(self) -> float:
        daily = 1.5 * math.sin(2.0 * math.pi * (self._hour - 9.0) / 24.0)
        self._room = _ou(self._room, self._room_base + daily, 1800.0, 0.3, self._dt, self._rng)
        return min(26.0, max(20.0, self._room))

    def _alarm(self) -> float:
        return 0.0

    # ---- water ----
    def _level(self) -> float:
        self._water_m = _ou(self._water_m, self._level_base, 600.0, 0.004, self._dt, self._rng)
        return min(0.1, max(0.0, self._water_m))

    # ---- electrical ----
    def _load_current(self) -> float:
        return self._current

    def _cable_temperature(self) -> float:
        # Joule heating ~ I²: settles 25-40 °C with a ten-minute thermal lag.
        target = 25.0 + 15.0 * min(1.0, self._current / self._rated_a) ** 2
        keep = math.exp(-self._dt / 600.0)
        self._cable = target + (self._cable - target) * keep + self._rng.gauss(0.0, 0.1)
        return min(40.0, max(25.0, self._cable))

    def _residual_current(self) -> float:
        # Insulation leakage grows a little with load.
        value = self._leak_base + 0.5 * self._current + self._rng.gauss(0.0, 2.0)
        return min(60.0, max(10.0, value))

    # ---- wearable ----
    def _heart_rate(self) -> float:
        self._hr_noise = _ou(self._hr_noise, 0.0, 300.0, 2.0, self._dt, self._rng)
        value = self._hr_rest + 20.0 * _wearable_activity(self._hour) + self._hr_noise
        return min(90.0, max(60.0, value))

    def _spo2(self) -> float:
        return min(99.0, max(95.0, self._spo2_base + self._rng.gauss(0.0, 0.6)))

    def _step_count(self) -> float:
        day = int((self._epoch_s + self._utc_offset_s) // _DAY_S)
        if day != self._steps_day:
            self._steps_day, self._steps = day, 0.0  # the daily count restarts at midnight
        activity = _wearable_activity(self._hour)
        self._steps += activity * self._stride_per_min * self._dt / 60.0 * self._rng.uniform(
            0.5, 1.5)
        return math.floor(self._steps)

    def _lat(self) -> float:
        north, _ = self._offset_m
        return self._home[0] + north / _METRES_PER_DEGREE_LAT

    def _lon(self) -> float:
        _, east = self._offset_m
        per_degree = _METRES_PER_DEGREE_LAT * math.cos(math.radians(self._home[0]))
        return self._home[1] + east / per_degree

    # ---- every type ----
    def _battery(self) -> float:
        used = self._drain_per_s * (self._last_t or 0.0)
        if self.device.type is DeviceType.WEARABLE:
            # Charged back to full whenever it reaches 15 %.
            span = self._battery_start - 15.0
            first_left = self._battery_start - used
            if first_left >= 15.0:
                return first_left
            return 100.0 - ((used - span) % 85.0)
        return max(5.0, self._battery_start - used)

    def _signal_strength(self) -> float:
        self._rssi = _ou(self._rssi, self._rssi_base, 600.0, 1.5, self._dt, self._rng)
        return min(-40.0, max(-120.0, self._rssi))


_Behaviour = Callable[[DeviceSignal], float]
# (device type or None for every type, metric key) -> how that metric behaves.
_BEHAVIOURS: dict[tuple[DeviceType | None, str], _Behaviour] = {
    (DeviceType.GAS, "lel"): DeviceSignal._lel,
    (DeviceType.GAS, "co"): DeviceSignal._co,
    (DeviceType.SMOKE, "smoke"): DeviceSignal._smoke,
    (DeviceType.SMOKE, "temperature"): DeviceSignal._room_temperature,
    (DeviceType.SMOKE, "alarm"): DeviceSignal._alarm,
    (DeviceType.WATER, "level"): DeviceSignal._level,
    (DeviceType.ELECTRICAL, "current"): DeviceSignal._load_current,
    (DeviceType.ELECTRICAL, "temperature"): DeviceSignal._cable_temperature,
    (DeviceType.ELECTRICAL, "residual_current"): DeviceSignal._residual_current,
    (DeviceType.WEARABLE, "heart_rate"): DeviceSignal._heart_rate,
    (DeviceType.WEARABLE, "spo2"): DeviceSignal._spo2,
    (DeviceType.WEARABLE, "steps"): DeviceSignal._step_count,
    (DeviceType.WEARABLE, "lat"): DeviceSignal._lat,
    (DeviceType.WEARABLE, "lon"): DeviceSignal._lon,
    (None, "battery"): DeviceSignal._battery,
    (None, "rssi"): DeviceSignal._signal_strength,
}

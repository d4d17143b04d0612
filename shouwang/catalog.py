"""The one table of device types, metrics and events that every service reads.

A new sensor type is a new row here, not a new class: ingest validation, the
detectors, the simulators and the console all iterate this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "EVENTS",
    "METRICS",
    "METRICS_BY_KEY",
    "DeviceType",
    "MetricDescription",
    "metrics_for",
]


class DeviceType(StrEnum):
    GAS = "gas"
    SMOKE = "smoke"
    WATER = "water"
    ELECTRICAL = "electrical"
    WEARABLE = "wearable"


_ALL_TYPES = frozenset(DeviceType)


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricDescription:
    key: str
    unit: str
    # What the sensor can physically report; outside it the sensor is faulty.
    valid_range: tuple[float, float]
    device_types: frozenset[DeviceType]
    label_zh: str
    label_en: str


METRICS: tuple[MetricDescription, ...] = (
    MetricDescription(key="lel", unit="%LEL", valid_range=(0.0, 100.0),
                      device_types=frozenset({DeviceType.GAS}),
                      label_zh="可燃气体浓度", label_en="combustible gas"),
    MetricDescription(key="co", unit="ppm", valid_range=(0.0, 2000.0),
                      device_types=frozenset({DeviceType.GAS}),
                      label_zh="一氧化碳", label_en="carbon monoxide"),
    MetricDescription(key="smoke", unit="%obs/m", valid_range=(0.0, 100.0),
                      device_types=frozenset({DeviceType.SMOKE}),
                      label_zh="烟雾浓度", label_en="smoke obscuration"),
    MetricDescription(key="temperature", unit="°C", valid_range=(-40.0, 200.0),
                      device_types=frozenset({DeviceType.SMOKE, DeviceType.ELECTRICAL}),
                      label_zh="温度", label_en="temperature"),
    MetricDescription(key="alarm", unit="", valid_range=(0.0, 1.0),
                      device_types=frozenset({DeviceType.SMOKE}),
                      label_zh="报警状态", label_en="alarm state"),
    MetricDescription(key="level", unit="m", valid_range=(-10.0, 20.0),
                      device_types=frozenset({DeviceType.WATER}),
                      label_zh="水位", label_en="water level"),
    MetricDescription(key="residual_current", unit="mA", valid_range=(0.0, 3000.0),
                      device_types=frozenset({DeviceType.ELECTRICAL}),
                      label_zh="剩余电流", label_en="residual current"),
    MetricDescription(key="current", unit="A", valid_range=(0.0, 1000.0),
                      device_types=frozenset({DeviceType.ELECTRICAL}),
                      label_zh="电流", label_en="current"),
    MetricDescription(key="heart_rate", unit="bpm", valid_range=(0.0, 250.0),
                      device_types=frozenset({DeviceType.WEARABLE}),
                      label_zh="心率", label_en="heart rate"),
    MetricDescription(key="spo2", unit="%", valid_range=(0.0, 100.0),
                      device_types=frozenset({DeviceType.WEARABLE}),
                      label_zh="血氧", label_en="blood oxygen"),
    MetricDescription(key="steps", unit="", valid_range=(0.0, 1e7),
                      device_types=frozenset({DeviceType.WEARABLE}),
                      label_zh="步数", label_en="steps"),
    MetricDescription(key="lat", unit="°", valid_range=(-90.0, 90.0),
                      device_types=frozenset({DeviceType.WEARABLE}),
                      label_zh="纬度", label_en="latitude"),
    MetricDescription(key="lon", unit="°", valid_range=(-180.0, 180.0),
                      device_types=frozenset({DeviceType.WEARABLE}),
                      label_zh="经度", label_en="longitude"),
    MetricDescription(key="battery", unit="%", valid_range=(0.0, 100.0),
                      device_types=_ALL_TYPES,
                      label_zh="电量", label_en="battery"),
    MetricDescription(key="rssi", unit="dBm", valid_range=(-140.0, 0.0),
                      device_types=_ALL_TYPES,
                      label_zh="信号强度", label_en="signal strength"),
)

METRICS_BY_KEY: dict[str, MetricDescription] = {m.key: m for m in METRICS}

# Discrete events a device may publish on .../event; stored as readings of value 1.0.
EVENTS: frozenset[str] = frozenset({"fall", "sos", "siren", "tamper"})


def metrics_for(device_type: DeviceType) -> tuple[MetricDescription, ...]:
    """The standard metrics a device of this type reports.

    >>> [m.key for m in metrics_for(DeviceType.GAS)]
    ['lel', 'co', 'battery', 'rssi']
    """
    return tuple(m for m in METRICS if device_type in m.device_types)

"""What the console shows, as frozen dataclasses (the JSON shapes live in ``views``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shouwang.models import Device

__all__ = ["DeviceState", "DeviceStatus"]


class DeviceStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    UNKNOWN = "unknown"  # registered, never heard from


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceState:
    """A registered device and how it is doing now."""

    device: Device
    status: DeviceStatus
    last_seen: float | None = None  # epoch seconds
    battery: float | None = None    # percent

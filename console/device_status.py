"""Whether a device counts as online, from what the store last heard of it."""

from __future__ import annotations

from console.models import DeviceStatus

__all__ = ["device_status"]


def device_status(*, stored: str, last_seen: float | None, report_interval_s: float,
                  now: float, offline_after_intervals: float) -> DeviceStatus:
    """Offline when it said so (status message, MQTT Last Will) or missed its reports.

    The rule matches the offline detector's (``detectors.offline_after_intervals``), so the
    console never calls a device online that the detectors already alerted on.

    >>> device_status(stored="online", last_seen=1000.0, report_interval_s=60.0, now=1100.0,
    ...               offline_after_intervals=3.0)
    <DeviceStatus.ONLINE: 'online'>
    >>> device_status(stored="online", last_seen=1000.0, report_interval_s=60.0, now=1181.0,
    ...               offline_after_intervals=3.0)
    <DeviceStatus.OFFLINE: 'offline'>
    >>> device_status(stored="unknown", last_seen=None, report_interval_s=60.0, now=0.0,
    ...               offline_after_intervals=3.0)
    <DeviceStatus.UNKNOWN: 'unknown'>
    """
    if stored == DeviceStatus.OFFLINE:
        return DeviceStatus.OFFLINE
    if last_seen is None:
        return DeviceStatus.UNKNOWN
    if now - last_seen > offline_after_intervals * report_interval_s:
        return DeviceStatus.OFFLINE
    return DeviceStatus.ONLINE

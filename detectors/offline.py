"""Device presence: offline after a silence or a Last Will, back online on the next message.

Silence is measured on ingest's receive time (``received_at``, the device's own ``ts``
when absent), against the worker's clock passed in as ``now``: both are server clocks,
while a device's clock may be wrong.

A device not heard from since the worker started counts as heard at the start: a fresh
worker has no history, and flagging every device at once would bury real alarms in a
flood of false ones. A device that stays silent is flagged one full window later.

Offline is a HEALTH finding at BLUE: it needs a maintenance visit, and the hazard
detectors of a silent device cannot fire, which is why it is reported at all.
"""

from __future__ import annotations

import math

from shouwang.models import Detection, DetectionKind, Device, Reading, ReadingKind, Severity

__all__ = ["OFFLINE_HAZARD", "Presence"]

OFFLINE_HAZARD = "offline"
_SEVERITY = Severity.BLUE


def _duration_zh(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} 秒"
    if seconds < 7200:
        return f"{seconds / 60:.0f} 分钟"
    return f"{seconds / 3600:.1f} 小时"


class Presence:
    """One device's last-heard time and offline flag.

    Parameters
    ----------
    device
        The registered device; its ``report_interval_s`` sets the silence window.
    after_intervals
        Offline after this many report intervals without a message.

    Examples
    --------
    >>> from shouwang.catalog import DeviceType
    >>> p = Presence(Device(id="g1", type=DeviceType.GAS, site="s1", report_interval_s=60),
    ...              after_intervals=3)
    >>> p.check(now=1170.0, started_at=1000.0) is None  # 170 s < 3 x 60 s
    True
    >>> p.check(now=1180.0, started_at=1000.0).message
    '设备离线：已 3 分钟未上报（上报周期 60 秒）'
    >>> out = []
    >>> p.observe(Reading(ts=1190.0, device_id="g1", site="s1", metric="lel", value=0.0),
    ...           now=1190.0, out=out)
    >>> [(d.hazard, d.firing) for d in out]
    [('offline', False)]
    """

    __slots__ = ("_device", "last_heard", "offline", "window_s")

    def __init__(self, device: Device, *, after_intervals: float) -> None:
        self._device = device
        self.window_s = after_intervals * device.report_interval_s
        self.last_heard = -math.inf
        self.offline = False

    def observe(self, reading: Reading, now: float, out: list[Detection]) -> None:
        """Note a message from the device; append a finding if its presence changed."""
        heard = reading.received_at or reading.ts
        if heard > self.last_heard:
            self.last_heard = heard
        if reading.kind is ReadingKind.STATUS and reading.value <= 0.0:
            # "offline" status, usually the broker publishing the device's Last Will.
            if not self.offline:
                self.offline = True
                out.append(self._finding(now, firing=True, reading_ts=reading.ts,
                                         message="设备离线：连接断开", drill=reading.drill))
            return
        if self.offline:
            self.offline = False
            out.append(self._finding(now, firing=False, reading_ts=reading.ts,
                                     message="设备恢复在线", drill=reading.drill))

    def check(self, now: float, *, started_at: float) -> Detection | None:
        """The offline finding if the device has been silent for its whole window."""
        if self.offline:
            return None
        silent = now - max(self.last_heard, started_at)
        if silent < self.window_s:
            return None
        self.offline = True
        interval = self._device.report_interval_s
        return self._finding(
            now, firing=True, reading_ts=max(self.last_heard, 0.0), drill=False,
            message=f"设备离线：已 {_duration_zh(silent)}未上报（上报周期 {interval:g} 秒）")

    def _finding(self, now: float, *, firing: bool, reading_ts: float, message: str,
                 drill: bool) -> Detection:
        return Detection(
            ts=now, device_id=self._device.id, site=self._device.site, hazard=OFFLINE_HAZARD,
            kind=DetectionKind.HEALTH, severity=_SEVERITY, firing=firing, metric="online",
            value=0.0 if firing else 1.0, message=message, reading_ts=reading_ts, drill=drill,
        )

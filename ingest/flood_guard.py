"""Per-device flood control: a token bucket per device, then quarantine if it goes on.

Each registered device may send ``max(rate_factor / report_interval_s, min_rate_per_s)``
messages a second with ``burst_messages`` in hand. Over that, a message is rejected as
``rate_limited``. A device over its limit again and again for ``quarantine_after_s``
(never within it for ``release_quiet_s`` in between) is quarantined: everything it sends is
dropped and counted, until it has kept within its limit for ``release_quiet_s`` or an
operator releases it.

The bucket refills by the larger of two clocks. Wall time (``received_at``) keeps a device
whose clock jumped back flowing. Device time (its ``ts``, never beyond ``received_at``)
lets a backlog through: messages queued during an ingest outage arrive at once but carry
the times they were taken, so a device that kept to its rate is not punished for our
outage. Device time only moves forward and never past arrival, so a forged ``ts`` buys at
most as much as wall time does: the limit holds within a factor of two.

Rejects are sampled: at most one row per device and reason every ``reject_sample_s``. The
row's ``detail`` starts with how many messages it stands for, so the rows still add up to
the exact count, while a flood cannot flood the rejects table. A device's invalid messages
count against its limit like valid ones (a flood of garbage is a flood); messages naming
no registered device share one bucket (``unregistered_rate_per_s``), never quarantined.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from config.settings import FloodSettings
from ingest import metrics
from ingest.models import RawMessage, RejectReason
from shouwang.models import Device, Reading, Reject

__all__ = ["FloodGuard", "QuarantineChange"]

log = logging.getLogger(__name__)

_SAMPLE_PAYLOAD_BYTES = 1024  # enough to see what the device sends, not to store the flood


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantineChange:
    """A device entered (``quarantined``) or left quarantine; ``by`` says who decided."""

    device_id: str
    site: str
    quarantined: bool
    at: float
    by: str
    detail: str
    dropped: int = 0


class _Sample:
    """Messages of one reason not yet stood for by a rejects row."""

    __slots__ = ("count", "sampled_at", "topic")

    def __init__(self, sampled_at: float, topic: str) -> None:
        self.count = 0
        self.sampled_at = sampled_at
        self.topic = topic


class _Flow:
    """One device's bucket, flood episode and rejects sampler (mutable, ingest-private)."""

    __slots__ = ("burst", "device", "device_clock", "dropped", "last_over", "over_since",
                 "quarantined_at", "rate", "sampled", "tokens", "wall_clock")

    def __init__(self, device: Device | None, rate: float, burst: float, device_t: float,
                 now: float) -> None:
        self.device = device
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.device_clock = device_t  # a backlog's first message starts device time
        self.wall_clock = now
        self.over_since: float | None = None
        self.last_over = 0.0
        self.quarantined_at: float | None = None
        self.dropped = 0
        self.sampled: dict[str, _Sample] = {}

    def take(self, ts: float, received_at: float) -> bool:
        credit = 0.0
        device_t = ts if ts < received_at else received_at
        if device_t > self.device_clock:
            credit = device_t - self.device_clock
            self.device_clock = device_t
        if received_at > self.wall_clock:
            credit = max(credit, received_at - self.wall_clock)
            self.wall_clock = received_at
        if credit:
            self.tokens = min(self.burst, self.tokens + credit * self.rate)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class FloodGuard:
    """Decides, per message, whether a device is within its limits.

    Parameters
    ----------
    settings
        The ``ingest.flood`` section.
    devices
        The registry: a device's ``report_interval_s`` sets its rate.

    Examples
    --------
    >>> from shouwang.catalog import DeviceType
    >>> gas = Device(id="g1", type=DeviceType.GAS, site="s", report_interval_s=10.0)
    >>> guard = FloodGuard(FloodSettings(burst_messages=5, quarantine_after_s=2,
    ...                                  release_quiet_s=10, reject_sample_s=10), {"g1": gas})
    >>> def send(t: float) -> bool:
    ...     reading = Reading(ts=t, device_id="g1", site="s", metric="lel", value=1.0)
    ...     message = RawMessage(topic="r/s/g1/telemetry", payload=b"{}", received_at=t)
    ...     return not guard.drop_quarantined(message) and guard.admit(reading, message)
    >>> [send(i / 100) for i in range(7)]  # 100 a second, 2 allowed: a burst of 5, then no
    [True, True, True, True, True, False, False]
    >>> passed = [send(i / 100) for i in range(7, 300)]  # 2 s over the limit: quarantined
    >>> sum(passed), guard.is_quarantined("g1"), guard.rate_limited, guard.dropped
    (4, True, 198, 93)
    >>> [(c.device_id, c.quarantined) for c in guard.take_changes()]
    [('g1', True)]
    >>> guard.tick(20.0); [(c.device_id, c.quarantined, c.by) for c in guard.take_changes()]
    [('g1', False, 'auto')]
    """

    def __init__(self, settings: FloodSettings, devices: Mapping[str, Device]) -> None:
        self._settings = settings
        self._devices = devices
        self._flows: dict[str, _Flow] = {}
        self._quarantined: dict[str, _Flow] = {}
        self._rejects: list[Reject] = []
        self._changes: list[QuarantineChange] = []
        self._open_samples: dict[str, _Flow] = {}  # flows with messages not yet in a row
        self._unregistered: _Flow | None = None  # one bucket for senders not in the registry
        self.rate_limited = 0
        self.dropped = 0
        self.quarantines = 0

    @property
    def quarantined(self) -> bool:
        """Any device quarantined: only then does each message need the topic check."""
        return bool(self._quarantined)

    def is_quarantined(self, device_id: str) -> bool:
        return device_id in self._quarantined

    def quarantined_devices(self) -> dict[str, int]:
        """Quarantined device ids and how many of their messages were dropped."""
        return {device_id: flow.dropped for device_id, flow in self._quarantined.items()}

    def limits(self, device: Device) -> tuple[float, float]:
        """(messages per second, burst) allowed to ``device``."""
        s = self._settings
        return (max(s.rate_factor / device.report_interval_s, s.min_rate_per_s),
                float(s.burst_messages))

    def drop_quarantined(self, message: RawMessage) -> bool:
        """True when the message's device is quarantined: it is dropped and counted."""
        if not self._quarantined:
            return False
        parts = message.topic.rsplit("/", 2)
        flow = self._quarantined.get(parts[-2]) if len(parts) == 3 else None
        if flow is None:
            return False
        self._drop(flow, message)
        return True

    def admit(self, reading: Reading, message: RawMessage) -> bool:
        """True when the device is within its limit; else the message is rate_limited (or
        dropped, if its device was quarantined earlier in the same batch)."""
        return self._admit(reading.device_id, reading.ts, message)

    def admit_reject(self, reject: Reject, message: RawMessage) -> bool:
        """True to store ``reject``; False when its sender is over its limit (then it is
        counted and sampled as rate_limited), so a flood of bad payloads cannot flood the
        rejects table either. Messages naming no registered device (or another site's)
        share one bucket: there is no device to hold them against."""
        device_id = reject.device_id
        if (device_id is not None and device_id in self._devices
                and reject.reason != RejectReason.SITE_MISMATCH.value):
            return self._admit(device_id, message.received_at, message)
        flow = self._unregistered
        now = message.received_at
        if flow is None:
            s = self._settings
            flow = self._unregistered = _Flow(None, s.unregistered_rate_per_s,
                                              float(s.unregistered_burst), now, now)
        if flow.take(now, now):
            return True
        self.rate_limited += 1
        metrics.REJECTS.labels(RejectReason.RATE_LIMITED.value).inc()
        self._sample(flow, RejectReason.RATE_LIMITED, message)
        return False

    def _admit(self, device_id: str, ts: float, message: RawMessage) -> bool:
        now = message.received_at
        flow = self._flows.get(device_id)
        if flow is None:
            flow = self._flow(device_id, min(ts, now), now)
            if flow is None:
                return True  # the decoder only passes registered devices
        if flow.quarantined_at is not None:
            self._drop(flow, message)
            return False
        if flow.take(ts, now):
            return True
        s = self._settings
        if flow.over_since is None or now - flow.last_over > s.release_quiet_s:
            flow.over_since = now
        flow.last_over = now
        self.rate_limited += 1
        metrics.REJECTS.labels(RejectReason.RATE_LIMITED.value).inc()
        self._sample(flow, RejectReason.RATE_LIMITED, message)
        if now - flow.over_since >= s.quarantine_after_s:
            self._quarantine(flow, now)
        return False

    def _drop(self, flow: _Flow, message: RawMessage) -> None:
        now = message.received_at
        flow.dropped += 1
        self.dropped += 1
        metrics.REJECTS.labels(RejectReason.QUARANTINED.value).inc()
        if not flow.take(now, now):
            flow.last_over = now  # still over its limit: the quiet period starts again
        self._sample(flow, RejectReason.QUARANTINED, message)

    def tick(self, now: float) -> None:
        """Release devices that kept quiet; close the rejects samples that are due."""
        quiet = self._settings.release_quiet_s
        for device_id, flow in list(self._quarantined.items()):
            if now - flow.last_over >= quiet:
                self.release(device_id, now, by="auto")
        for device_id, flow in list(self._open_samples.items()):
            still_open = False
            for reason, sample in flow.sampled.items():
                if sample.count and now - sample.sampled_at >= self._settings.reject_sample_s:
                    self._rejects.append(self._reject(flow, reason, sample.topic, b"", now,
                                                      sample.count))
                    sample.count, sample.sampled_at = 0, now
                still_open = still_open or sample.count > 0
            if not still_open:
                del self._open_samples[device_id]

    def release(self, device_id: str, now: float, *, by: str) -> bool:
        """End a quarantine (``by``: auto, operator); False if it was not quarantined."""
        flow = self._quarantined.pop(device_id, None)
        if flow is None or flow.device is None:
            return False
        flow.tokens, flow.over_since, flow.quarantined_at = flow.burst, None, None
        flow.wall_clock = flow.device_clock = now
        log.warning("device released from quarantine device_id=%s by=%s dropped=%d",
                    device_id, by, flow.dropped)
        self._changes.append(QuarantineChange(
            device_id=device_id, site=flow.device.site, quarantined=False, at=now, by=by,
            detail=f"released by {by} after {flow.dropped} dropped messages",
            dropped=flow.dropped))
        flow.dropped = 0
        return True

    def restore(self, quarantined_at: Mapping[str, float], now: float) -> None:
        """Quarantines still in force (from the database): no new change, the alert is open."""
        for device_id in quarantined_at:
            if device_id in self._quarantined:
                continue
            flow = self._flows.get(device_id) or self._flow(device_id, now, now)
            if flow is None:
                continue  # no longer registered
            flow.quarantined_at = quarantined_at[device_id]
            flow.last_over = now
            self._quarantined[device_id] = flow

    def in_force(self) -> Iterable[str]:
        return self._quarantined.keys()

    def take_rejects(self) -> list[Reject]:
        taken, self._rejects = self._rejects, []
        return taken

    def take_changes(self) -> list[QuarantineChange]:
        taken, self._changes = self._changes, []
        return taken

    def _flow(self, device_id: str, device_t: float, now: float) -> _Flow | None:
        device = self._devices.get(device_id)
        if device is None:
            return None
        rate, burst = self.limits(device)
        flow = self._flows[device_id] = _Flow(device, rate, burst, device_t, now)
        return flow

    def _quarantine(self, flow: _Flow, now: float) -> None:
        device = flow.device
        assert device is not None  # only registered devices reach _admit
        flow.quarantined_at = now
        self._quarantined[device.id] = flow
        self.quarantines += 1
        detail = (f"over {flow.rate:g} messages/s (burst {flow.burst:g}) for "
                  f"{now - (flow.over_since or now):.0f} s")
        log.warning("device quarantined device_id=%s site=%s %s", device.id, device.site, detail)
        self._changes.append(QuarantineChange(device_id=device.id, site=device.site,
                                              quarantined=True, at=now, by="ingest",
                                              detail=detail))

    def _sample(self, flow: _Flow, reason: RejectReason, message: RawMessage) -> None:
        sample = flow.sampled.get(reason.value)
        now = message.received_at
        if sample is None or now - sample.sampled_at >= self._settings.reject_sample_s:
            count = 1 + (sample.count if sample is not None else 0)
            self._rejects.append(self._reject(flow, reason.value, message.topic,
                                              message.payload[:_SAMPLE_PAYLOAD_BYTES], now,
                                              count))
            flow.sampled[reason.value] = _Sample(now, message.topic)
        else:
            sample.count += 1
            sample.topic = message.topic
            self._open_samples[flow.device.id if flow.device else ""] = flow

    def _reject(self, flow: _Flow, reason: str, topic: str, payload: bytes, at: float,
                count: int) -> Reject:
        detail = (f"{count} messages {reason} (limit {flow.rate:g}/s, burst {flow.burst:g}); "
                  f"one row per {self._settings.reject_sample_s:g} s")
        return Reject(received_at=at, topic=topic[:512], reason=reason, payload=payload,
                      device_id=flow.device.id if flow.device else None, detail=detail)

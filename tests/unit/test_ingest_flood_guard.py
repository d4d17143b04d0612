"""FloodGuard's decisions with an injected clock (the messages' own times)."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from config.settings import FloodSettings
from ingest.flood_guard import FloodGuard
from ingest.models import RawMessage
from shouwang.catalog import DeviceType
from shouwang.models import Device, Reading, Reject

T0 = 1_790_000_000.0
GAS = Device(id="g1", type=DeviceType.GAS, site="s", report_interval_s=1.0)
OTHER = Device(id="g2", type=DeviceType.GAS, site="s", report_interval_s=1.0)
SETTINGS = FloodSettings(rate_factor=20, min_rate_per_s=1, burst_messages=20,
                         quarantine_after_s=5, release_quiet_s=30, reject_sample_s=10)


def _guard(settings: FloodSettings = SETTINGS) -> FloodGuard:
    return FloodGuard(settings, {GAS.id: GAS, OTHER.id: OTHER})


def _send(guard: FloodGuard, *, ts: float, at: float, device: Device = GAS) -> bool:
    reading = Reading(ts=ts, device_id=device.id, site="s", metric="lel", value=1.0)
    message = RawMessage(topic=f"r/s/{device.id}/telemetry", payload=b"{}", received_at=at)
    return not guard.drop_quarantined(message) and guard.admit(reading, message)


def _admitted(guard: FloodGuard, times: list[tuple[float, float]]) -> int:
    return sum(_send(guard, ts=ts, at=at) for ts, at in times)


def test_limits_follow_the_report_interval_with_a_floor() -> None:
    guard = FloodGuard(FloodSettings(rate_factor=20, min_rate_per_s=2, burst_messages=50), {})
    fast = Device(id="w", type=DeviceType.WEARABLE, site="s", report_interval_s=0.5)
    slow = Device(id="g", type=DeviceType.GAS, site="s", report_interval_s=600)
    assert guard.limits(fast) == (40.0, 50.0)
    assert guard.limits(slow) == (2.0, 50.0)


def test_a_device_at_its_normal_rate_is_never_limited() -> None:
    guard = _guard()
    assert _admitted(guard, [(T0 + n, T0 + n) for n in range(3600)]) == 3600
    assert guard.rate_limited == 0


@pytest.mark.parametrize("seen_before", [True, False], ids=["broker-outage", "ingest-restart"])
def test_a_backlog_with_its_own_times_passes_after_an_outage(seen_before: bool) -> None:
    # An hour of readings taken once a second, delivered at once when ingest comes back
    # (to the same guard, or to a fresh one after an ingest restart).
    guard = _guard()
    if seen_before:
        _send(guard, ts=T0, at=T0)
    arrive = T0 + 3600.5
    backlog = [(T0 + n, arrive + n * 1e-4) for n in range(1, 3600)]
    assert _admitted(guard, backlog) == len(backlog)


def test_flood_at_fifty_times_is_held_to_the_limit() -> None:
    guard = _guard(FloodSettings(rate_factor=20, min_rate_per_s=1, burst_messages=20,
                                 quarantine_after_s=1000, release_quiet_s=30))
    times = [(T0 + n / 50, T0 + n / 50) for n in range(50 * 60)]  # 50 a second for 60 s
    admitted = _admitted(guard, times)
    assert 20 * 60 <= admitted <= 20 * 60 + 20 + 1


@pytest.mark.parametrize("forged", ["future", "past", "alternating"])
def test_forged_timestamps_buy_at_most_twice_the_limit(forged: str) -> None:
    guard = _guard(FloodSettings(rate_factor=20, min_rate_per_s=1, burst_messages=20,
                                 quarantine_after_s=1000, release_quiet_s=30))
    times = []
    for n in range(50 * 60):
        at = T0 + n / 50
        ts = {"future": at + 3600 + n, "past": T0 - 86400,
              "alternating": at + (3600 if n % 2 else -3600)}[forged]
        times.append((ts, at))
    assert _admitted(guard, times) <= 2 * 20 * 60 + 20 + 1


def test_a_clock_set_back_does_not_starve_a_normal_device() -> None:
    guard = _guard()
    _admitted(guard, [(T0 + n, T0 + n) for n in range(100)])
    # NTP moves the device's clock back an hour; it goes on once a second.
    assert _admitted(guard, [(T0 - 3600 + n, T0 + 100 + n) for n in range(600)]) == 600


def test_sustained_flood_quarantines_others_untouched_and_rejects_add_up() -> None:
    guard = _guard()
    for n in range(50 * 20):  # 20 s at 50 a second
        at = T0 + n / 50
        _send(guard, ts=at, at=at)
        if n % 50 == 0:
            assert _send(guard, ts=at, at=at, device=OTHER)
    assert guard.is_quarantined(GAS.id) and not guard.is_quarantined(OTHER.id)
    changes = guard.take_changes()
    assert [(c.device_id, c.quarantined, c.by) for c in changes] == [("g1", True, "ingest")]
    guard.tick(T0 + 60)  # the last samples' counts come out as summary rows
    rejects = guard.take_rejects()
    counts: dict[str, int] = {}
    for r in rejects:
        match = re.match(r"(\d+) messages", r.detail)
        assert match and r.device_id == GAS.id
        counts[r.reason] = counts.get(r.reason, 0) + int(match.group(1))
    assert counts == {"rate_limited": guard.rate_limited, "quarantined": guard.dropped}
    assert len(rejects) <= 2 * (20 / 10 + 2)  # one row per reason per 10 s, plus summaries


def test_quarantine_ends_after_a_quiet_period_or_by_an_operator() -> None:
    guard = _guard()
    for n in range(50 * 10):
        _send(guard, ts=T0 + n / 50, at=T0 + n / 50)
    assert guard.is_quarantined(GAS.id)
    guard.take_changes()
    # Still flooding: no release however long it goes on.
    for n in range(50 * 40):
        at = T0 + 10 + n / 50
        assert not _send(guard, ts=at, at=at)
    guard.tick(T0 + 50)
    assert guard.is_quarantined(GAS.id)
    # Back to once a second: released once it kept within its limit for release_quiet_s.
    for n in range(40):
        _send(guard, ts=T0 + 50 + n, at=T0 + 50 + n)
        guard.tick(T0 + 50 + n)
    assert not guard.is_quarantined(GAS.id)
    assert [(c.quarantined, c.by) for c in guard.take_changes()] == [(False, "auto")]
    assert _send(guard, ts=T0 + 95, at=T0 + 95)
    guard.restore({GAS.id: T0}, T0 + 96)
    assert guard.is_quarantined(GAS.id) and guard.take_changes() == []
    assert guard.release(GAS.id, T0 + 97, by="operator")
    assert not guard.release(GAS.id, T0 + 98, by="operator")


def test_settings_are_checked() -> None:
    with pytest.raises(ValidationError):
        FloodSettings(rate_factor=0.5)
    with pytest.raises(ValidationError):
        FloodSettings(release_quiet_s=5, reject_sample_s=10)


def test_a_device_quarantined_mid_batch_is_dropped_not_quarantined_again() -> None:
    # Ingest screens quarantined devices once a batch; the rest of that batch goes to admit.
    guard = _guard()
    admitted = 0
    for n in range(50 * 10):
        at = T0 + n / 50
        reading = Reading(ts=at, device_id=GAS.id, site="s", metric="lel", value=1.0)
        admitted += guard.admit(reading, RawMessage(topic="r/s/g1/telemetry", payload=b"{}",
                                                    received_at=at))
    assert guard.is_quarantined(GAS.id) and guard.quarantines == 1
    assert len(guard.take_changes()) == 1
    assert admitted + guard.rate_limited + guard.dropped == 500
    assert guard.dropped > 0


def _reject(device_id: str | None, reason: str, at: float) -> tuple[Reject, RawMessage]:
    topic = f"r/s/{device_id or 'ghost'}/telemetry"
    return (Reject(received_at=at, topic=topic, reason=reason, payload=b"{", device_id=device_id),
            RawMessage(topic=topic, payload=b"{", received_at=at))


def test_a_flood_of_bad_payloads_is_limited_and_quarantined_too() -> None:
    guard = _guard()
    stored = sum(guard.admit_reject(*_reject(GAS.id, "malformed_json", T0 + n / 50))
                 for n in range(50 * 10))
    assert stored < 20 + 20 * 6  # the burst, then the limit until the quarantine at ~5.4 s
    assert guard.is_quarantined(GAS.id) and guard.quarantines == 1
    assert stored + guard.rate_limited + guard.dropped == 500


def test_senders_outside_the_registry_share_one_bucket_and_are_never_quarantined() -> None:
    guard = _guard(FloodSettings(unregistered_rate_per_s=100, unregistered_burst=1000))
    kinds = [(None, "unknown_device"), (GAS.id, "site_mismatch")]
    stored = sum(guard.admit_reject(*_reject(*kinds[n % 2], T0 + n / 5000))
                 for n in range(5000))  # 5000 in one second
    assert 1000 <= stored <= 1000 + 100 + 1
    assert guard.rate_limited == 5000 - stored
    assert guard.quarantines == 0 and not guard.is_quarantined(GAS.id)
    assert _send(guard, ts=T0 + 1, at=T0 + 1)  # the device named by the forgeries is untouched
    guard.tick(T0 + 60)
    rows = guard.take_rejects()
    assert all(r.device_id is None for r in rows)
    assert sum(int(r.detail.split()[0]) for r in rows) == guard.rate_limited

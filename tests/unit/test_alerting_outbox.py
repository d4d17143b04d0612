"""The retry schedule and the stage chain: pure logic, no database."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, cast

import pytest

from alerting.models import NotifyContext
from alerting.outbox import retry_delay
from alerting.stages import chain
from shouwang.models import Alert, AlertStatus, DetectionKind, Severity


def test_backoff_doubles_from_the_base_and_is_capped() -> None:
    class Top(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b  # the un-jittered ceiling

    delays = [retry_delay(n, base_s=1.0, max_s=60.0, rng=Top()) for n in range(9)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert retry_delay(500, base_s=1.0, max_s=60.0, rng=Top()) == 60.0  # no overflow


@pytest.mark.parametrize("attempts", range(10))
def test_jitter_stays_between_half_and_all_of_the_step(attempts: int) -> None:
    rng = random.Random(attempts)
    ceiling = min(30.0, 0.5 * 2**attempts)
    samples = [retry_delay(attempts, base_s=0.5, max_s=30.0, rng=rng) for _ in range(200)]
    assert all(ceiling / 2 <= s <= ceiling for s in samples)
    assert len(set(samples)) > 100  # actually spread, not one value


def test_same_seed_same_schedule() -> None:
    def schedule(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [retry_delay(n, base_s=1.0, max_s=60.0, rng=rng) for n in range(8)]

    assert schedule(3) == schedule(3)
    assert schedule(3) != schedule(4)


def _alert(alert_id: int) -> Alert:
    return Alert(id=alert_id, site="s", device_id="d", hazard="gas", kind=DetectionKind.HAZARD,
                 severity=Severity.RED, status=AlertStatus.OPEN, opened_at=0.0)


async def test_chain_runs_in_order_and_stops_on_empty() -> None:
    seen: list[tuple[str, list[int], float]] = []

    def stage(name: str, keep: int) -> Any:  # Any: a stub stage
        async def run(ctx: NotifyContext, alerts: Sequence[Alert]) -> Sequence[Alert]:
            seen.append((name, [a.id for a in alerts], ctx.now))
            return alerts[:keep]
        return run

    ctx = NotifyContext(now=42.0, cur=cast(Any, None))
    pipeline = chain(stage("a", 2), stage("b", 0), stage("c", 5))
    out = await pipeline(ctx, [_alert(i) for i in (1, 2, 3)])
    assert out == []
    assert seen == [("a", [1, 2, 3], 42.0), ("b", [1, 2], 42.0)]  # c never ran

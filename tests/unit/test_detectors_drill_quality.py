"""The drill-quality bench's claims, small: every hazard found, early warnings, no false ones."""

from __future__ import annotations

from bench.drill_quality import LEAD_TARGET_S, LEAD_TARGETS, hazard_outcomes, normal_outcome
from config.settings import DetectorSettings, ForecastSettings


def test_every_hazard_scenario_is_detected_and_the_slow_ones_pre_warned() -> None:
    outcomes = hazard_outcomes(seed=1, interval_s=30.0, settings=DetectorSettings())

    assert [o.scenario for o in outcomes if o.delay_s is None] == []
    leads = {o.scenario: o.lead_s for o in outcomes if o.scenario in LEAD_TARGETS}
    assert set(leads) == set(LEAD_TARGETS)
    assert all(lead is not None and lead >= LEAD_TARGET_S for lead in leads.values()), leads
    # Detected after onset, never before it.
    assert all(o.delay_s is not None and o.delay_s >= 0.0 for o in outcomes)


def test_a_nuisance_day_raises_no_hazard_but_would_with_a_co_and_smoke_forecast() -> None:
    quiet = normal_outcome(seed=2, count=20, days=1, interval_s=60.0,
                           settings=DetectorSettings())
    assert quiet.hazards == ()
    assert quiet.device_days == 20

    metrics = (*DetectorSettings().forecast.metrics, "co", "smoke")
    noisy = normal_outcome(seed=2, count=20, days=1, interval_s=60.0,
                           settings=DetectorSettings(forecast=ForecastSettings(metrics=metrics)))
    assert {d.hazard for d in noisy.hazards} <= {"co_forecast", "smoke_forecast"}
    assert noisy.hazards, "the nuisance day does tempt a straight-line forecast"

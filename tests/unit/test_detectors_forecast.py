"""Early warning: time-to-threshold forecasts and rate-of-rise on noisy signals."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable

from config.settings import DetectorSettings, ForecastSettings
from detectors import DetectorEngine
from detectors.forecast import robust_trend
from shouwang.catalog import DeviceType
from shouwang.models import Detection, Device, Reading, Severity

NOW = 1_764_120_000.0
STEP_S = 5.0


def _engine(device_type: DeviceType = DeviceType.GAS,
            settings: DetectorSettings | None = None) -> DetectorEngine:
    device = Device(id="d1", type=device_type, site="s1")
    return DetectorEngine(settings or DetectorSettings(), {"d1": device}, clock=lambda: NOW,
                          started_at=NOW)


def _forecasting(*metrics: str) -> DetectorSettings:
    return DetectorSettings(forecast=ForecastSettings(metrics=metrics))


def _run(engine: DetectorEngine, metric: str, signal: Callable[[float], float],
         samples: int) -> list[tuple[float, Detection]]:
    """Feed ``signal(t)`` every STEP_S seconds; returns (t, detection) pairs."""
    found: list[tuple[float, Detection]] = []
    for i in range(samples):
        t = i * STEP_S
        reading = Reading(ts=NOW + t, device_id="d1", site="s1", metric=metric,
                          value=round(signal(t), 2))
        found += [(t, d) for d in engine.process([reading])]
    return found


def _eta_s(message: str) -> float:
    match = re.search(r"预计约 (\d+) (秒|分钟)后", message)
    assert match, message
    return float(match[1]) * (60.0 if match[2] == "分钟" else 1.0)


def test_sen_slope_ignores_an_outlier_that_would_fool_a_two_point_difference() -> None:
    rng = random.Random(3)
    times = [5.0 * i for i in range(12)]
    values = [2.0 + 0.1 * t + rng.gauss(0.0, 0.3) for t in times]
    values[-1] += 15.0  # one wild reading at the end

    trend = robust_trend(times, values)

    assert abs(trend.slope - 0.1) < 0.02
    assert abs(trend.level - (2.0 + 0.1 * times[-1])) < 1.0
    assert trend.z > 3.0


def test_forecast_on_a_noisy_ramp_warns_early_with_the_right_time_to_threshold() -> None:
    rng = random.Random(11)
    # 2 %LEL rising 0.1 %LEL/s: level 1 (25 %LEL) is crossed at t = 230 s.
    found = _run(_engine(), "lel", lambda t: 2.0 + 0.1 * t + rng.gauss(0.0, 0.5), 60)

    forecasts = [(t, d) for t, d in found if d.hazard == "gas_forecast"]
    t_warn, first = forecasts[0]
    assert first.firing and first.severity is Severity.BLUE
    assert re.fullmatch(r"可燃气体浓度 [\d.]+ %LEL，持续上升，预计约 \d+ 秒后达到一级报警值 25",
                        first.message), first.message
    remaining = 230.0 - t_warn
    assert remaining >= 100.0  # a real head start, not a last-second notice
    assert abs(_eta_s(first.message) - remaining) <= 0.15 * remaining + 10.0
    # Once: later readings do not repeat it; it turns YELLOW once when close, and hands over
    # to the level-1 alarm, which clears it.
    assert [(d.firing, d.severity) for _, d in forecasts] == [
        (True, Severity.BLUE), (True, Severity.YELLOW), (False, Severity.BLUE)]
    t_alarm = next(t for t, d in found if d.hazard == "gas" and d.firing)
    assert t_alarm - t_warn >= 100.0
    assert forecasts[-1][0] == t_alarm
    assert forecasts[-1][1].message.endswith("预警转为报警")


def test_no_pre_warning_on_noise_in_the_watch_band() -> None:
    rng = random.Random(5)
    # Six hours of a noisy 10 %LEL reading (well inside the band a forecast watches).
    found = _run(_engine(), "lel", lambda t: 10.0 + rng.gauss(0.0, 2.0), 6 * 720)

    assert found == []


def test_no_pre_warning_on_spikes_or_a_cooking_co_bump() -> None:
    rng = random.Random(8)

    def spiky(t: float) -> float:
        return 6.0 + rng.gauss(0.0, 0.5) + (14.0 if int(t) % 300 in (0, 5, 10) else 0.0)

    def cooking(t: float) -> float:  # +8 ppm over 20 min, as a kitchen's CO does
        bump = 8.0 * math.sin(math.pi * t / 1200.0) if t < 1200.0 else 0.0
        return 1.5 + bump + abs(rng.gauss(0.0, 0.4))

    assert _run(_engine(), "lel", spiky, 720) == []
    # CO is not forecast by default (see the next test); the trend test alone keeps a
    # cooking bump quiet when it is.
    assert _run(_engine(settings=_forecasting("co")), "co", cooking, 480) == []


def test_co_and_smoke_are_not_forecast_by_default() -> None:
    # Shower steam: 0.2 -> 2.2 %obs/m over ten minutes at a steady pace, then back. As a
    # straight line it is 3 %obs/m (level 1) in four minutes; the steam never gets there.
    def steam(t: float) -> float:
        return 0.2 + 2.0 * math.sin(math.pi * t / 1200.0) if t < 1200.0 else 0.2

    def hazards(found: list[tuple[float, Detection]]) -> set[str]:
        return {d.hazard for _, d in found}

    assert hazards(_run(_engine(DeviceType.SMOKE, _forecasting("smoke")), "smoke", steam,
                        240)) == {"smoke_forecast"}
    assert _run(_engine(DeviceType.SMOKE), "smoke", steam, 240) == []
    assert not {"co", "smoke"} & set(DetectorSettings().forecast.metrics)


def test_a_slow_leak_filling_a_room_is_pre_warned_minutes_ahead() -> None:
    # The slow gas leak's shape: 0.5 %LEL approaching 40 %LEL with a 15-minute time
    # constant, sampled every 30 s with sensor noise; level 1 (25 %LEL) at ~16 minutes.
    rng = random.Random(3)
    engine = _engine()
    found: list[tuple[float, Detection]] = []
    for i in range(80):
        t = 30.0 * i
        value = 0.5 + 39.5 * (1.0 - math.exp(-t / 900.0)) + rng.gauss(0.0, 0.25)
        found += [(t, d) for d in engine.process([Reading(
            ts=NOW + t, device_id="d1", site="s1", metric="lel", value=round(value, 2))])]

    t_warn = next(t for t, d in found if d.hazard == "gas_forecast" and d.firing)
    t_alarm = next(t for t, d in found if d.hazard == "gas" and d.firing)
    assert t_alarm - t_warn >= 120.0


def test_a_rise_that_levels_off_warns_once_and_clears_once() -> None:
    rng = random.Random(2)

    def rise_then_plateau(t: float) -> float:
        return min(4.0 + 0.05 * t, 15.0) + rng.gauss(0.0, 0.3)

    found = _run(_engine(), "lel", rise_then_plateau, 720)

    assert [(d.hazard, d.firing) for _, d in found] == [
        ("gas_forecast", True), ("gas_forecast", False)]
    assert found[1][1].message.endswith("上升趋势已解除")


def test_rate_of_rise_fires_below_the_fixed_heat_levels_and_not_on_room_drift() -> None:
    rng = random.Random(4)
    # A fire: +12 °C/min from 25 °C; level 1 (54 °C) would come only after ~145 s.
    fire = _run(_engine(DeviceType.SMOKE), "temperature",
                lambda t: 25.0 + 0.2 * t + rng.gauss(0.0, 0.2), 30)
    rises = [(t, d) for t, d in fire if d.hazard == "heat_rise"]
    assert rises and rises[0][1].firing and rises[0][1].severity is Severity.ORANGE
    assert rises[0][0] < 145.0
    assert "差温报警值 8.3 °C/分钟" in rises[0][1].message

    drift = _run(_engine(DeviceType.SMOKE), "temperature",
                 lambda t: 22.0 + 0.001 * t + rng.gauss(0.0, 0.2), 720)
    assert drift == []

"""Detection quality on the scenario library: delay, pre-warning lead, false alarms.

    .venv/bin/python -m bench.drill_quality [--seeds 5] [--interval 30]
        [--devices 300] [--days 10] [--nuisance-interval 60]
        [--forecast-metrics lel,temperature,level,residual_current]

No broker: ``simulators.Community`` generates each device's MQTT payloads in simulated
time (its seeded signal model plus the scenario overlays, at its report interval), the
ingest ``Decoder`` turns them into readings as the live pipeline does, and one
``DetectorEngine`` with the default settings consumes them, its clock set to the
simulated time (a ``tick`` every 5 s finds silent devices). ``--forecast-metrics``
replaces ``detectors.forecast.metrics`` to compare what a forecast on more metrics costs.

Hazards: ``simulators.testbed.hazard_testbed`` (every hazard scenario on its own device,
bystanders, a building for the power outage), onset an hour after start
(the learned detectors need history, as they have live), once per seed.
Per expected hazard:

- detection delay: onset to the device time of the first firing detection of that hazard;
- pre-warning lead: from the first firing ``{hazard}_forecast`` to the level-1 crossing
  (the first firing of the hazard), for hazards the forecast watches;
- anomaly delay: onset to the first learned-anomaly episode on the device (information).

Normal data: ``--devices`` devices (an equal share of every type, twenty to a building)
live ``--days`` days, each day the nuisance day (cooking CO and gas, shower steam,
afternoon rain, a sleeping resident) on top of the devices' own cooking and daily
cycles. Every firing HAZARD detection there is a false alarm, pre-warnings included.

Medians over seeds, with the range. The last line is the headline.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from config.settings import DetectorSettings, ForecastSettings
from detectors import DetectorEngine
from ingest.decoder import Decoder
from ingest.models import RawMessage
from shouwang.catalog import DeviceType
from shouwang.models import Detection, DetectionKind, Device, Location
from simulators import Community, ScheduledScenario
from simulators.scenarios import NUISANCE_DAY
from simulators.testbed import hazard_testbed

DAY = 86_400.0
CST = 8 * 3600.0  # the simulated devices' local time is UTC+8
# A local midnight: nuisance days line up with the devices' daily cycles.
EPOCH = 1_764_086_400.0 - CST
LATENCY_S = 0.2        # device to ingest
STEP_S = 5.0           # engine tick period in simulated seconds
ONSET_S = 3600.0       # an hour of history first, as a live device has
HAZARD_RUN_S = 3600.0  # after onset: the slowest scenario crosses level 1 at ~15 min
LEAD_TARGET_S = 30.0
LEAD_TARGETS = ("slow_gas_leak", "garage_flood")
FALSE_ALARM_TARGET = 1.0  # per 1,000 device-days


@dataclass(frozen=True, slots=True, kw_only=True)
class HazardOutcome:
    scenario: str
    hazard: str
    delay_s: float | None       # onset to the first firing of the hazard
    lead_s: float | None        # first pre-warning to the level-1 crossing; None = none
    forecast: bool              # the forecast watches this hazard
    anomaly_delay_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class NormalOutcome:
    device_days: float
    hazards: tuple[Detection, ...]
    anomaly_episodes: int


def _run(community: Community, devices: Sequence[Device], until_s: float,
         settings: DetectorSettings) -> list[Detection]:
    """Every detection of the engine over the community's messages up to ``until_s``."""
    registry = {d.id: d for d in devices}
    decoder = Decoder(registry)
    clock = [community.wall_ts(0.0)]
    engine = DetectorEngine(settings, registry, clock=lambda: clock[0],
                            started_at=clock[0])
    found: list[Detection] = []
    t = 0.0
    while t < until_s:
        t += STEP_S
        clock[0] = community.wall_ts(t)
        for message in community.due(t):
            received = community.wall_ts(message.t_s) + LATENCY_S
            result = decoder.decode(RawMessage(topic=message.topic, payload=message.payload,
                                               received_at=received))
            if result.reject is not None:
                raise RuntimeError(f"simulated message rejected: {result.reject.detail}")
            found.extend(engine.process(result.readings))
        found.extend(engine.tick(clock[0]))
    return found


def hazard_outcomes(seed: int, interval_s: float,
                    settings: DetectorSettings) -> list[HazardOutcome]:
    devices, runs = hazard_testbed("drill", start_s=ONSET_S, report_interval_s=interval_s)
    community = Community(devices, seed=seed, epoch0=EPOCH + 10 * 3600.0, runs=runs)
    found = _run(community, devices, ONSET_S + HAZARD_RUN_S, settings)
    watched = set(settings.forecast.metrics)
    forecast_hazards = {r.hazard for r in settings.thresholds
                        if r.metric in watched and r.direction == "above"}
    outcomes = []
    for truth in community.ground_truth():
        mine = [d for d in found if d.device_id == truth.device_id and d.firing]
        # A status message has no device time: the offline finding counts on the clock.
        hits = [d.reading_ts if d.hazard != "offline" else d.ts
                for d in mine if d.hazard == truth.hazard]
        crossing = min(hits) if hits else None
        warnings = [d.reading_ts for d in mine if d.hazard == f"{truth.hazard}_forecast"]
        lead = None
        if crossing is not None and warnings and min(warnings) < crossing:
            lead = crossing - min(warnings)
        anomalies = [d.reading_ts for d in mine if d.kind is DetectionKind.ANOMALY]
        outcomes.append(HazardOutcome(
            scenario=truth.scenario, hazard=truth.hazard,
            delay_s=None if crossing is None else crossing - truth.onset_ts,
            lead_s=lead, forecast=truth.hazard in forecast_hazards,
            anomaly_delay_s=min(anomalies) - truth.onset_ts if anomalies else None))
    return outcomes


def normal_outcome(seed: int, count: int, days: int, interval_s: float,
                   settings: DetectorSettings) -> NormalOutcome:
    kinds = list(DeviceType)
    devices = [Device(id=f"home-{i:04d}", type=kinds[i % len(kinds)], site="normal",
                      location=Location(building=f"{i // 20 + 1}号楼", room=f"{i % 20 + 1}01"),
                      report_interval_s=interval_s)
               for i in range(count)]
    runs = [ScheduledScenario(scenario=NUISANCE_DAY, device_id=devices[0].id, start_s=day * DAY)
            for day in range(days)]
    community = Community(devices, seed=seed, epoch0=EPOCH, runs=runs)
    found = _run(community, devices, days * DAY, settings)
    hazards = tuple(d for d in found if d.firing and d.kind is DetectionKind.HAZARD)
    episodes = sum(d.firing and d.kind is DetectionKind.ANOMALY for d in found)
    return NormalOutcome(device_days=count * days, hazards=hazards, anomaly_episodes=episodes)


def _span(values: Sequence[float | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "—"
    median = statistics.median(got)
    text = f"{median:.0f}"
    if len(got) > 1 and max(got) - min(got) >= 1:
        text += f" ({min(got):.0f}–{max(got):.0f})"
    if len(got) < len(values):
        text += f" [{len(values) - len(got)} missed]"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="hazard runs, one per seed")
    parser.add_argument("--interval", type=float, default=30.0,
                        help="hazard devices' report interval, s")
    parser.add_argument("--devices", type=int, default=300)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--nuisance-interval", type=float, default=60.0,
                        help="normal devices' report interval, s")
    parser.add_argument("--forecast-metrics", default=None,
                        help="comma-separated; default: detectors.forecast.metrics")
    args = parser.parse_args()
    settings = DetectorSettings()
    if args.forecast_metrics is not None:
        metrics = tuple(m for m in args.forecast_metrics.split(",") if m)
        settings = DetectorSettings(forecast=ForecastSettings(metrics=metrics))
    print(f"forecast metrics: {', '.join(settings.forecast.metrics)}")

    by_key: dict[tuple[str, str], list[HazardOutcome]] = {}
    for seed in range(args.seeds):
        for outcome in hazard_outcomes(seed, args.interval, settings):
            by_key.setdefault((outcome.scenario, outcome.hazard), []).append(outcome)
    print(f"hazard scenarios: {args.seeds} seeds, reports every {args.interval:g} s, "
          f"onset {ONSET_S:g} s; seconds, median (min–max)")
    print(f"| {'scenario':<22} | {'hazard':<16} | {'detected':>8} | {'delay from onset':>18} "
          f"| {'pre-warning lead':>18} | {'anomaly delay':>16} |")
    print(f"|{'-' * 24}|{'-' * 18}|{'-' * 10}|{'-' * 20}|{'-' * 20}|{'-' * 18}|")
    detected_all = True
    leads: dict[str, float] = {}
    for (scenario, hazard), outcomes in by_key.items():
        detected = sum(o.delay_s is not None for o in outcomes)
        detected_all &= detected == len(outcomes)
        lead = _span([o.lead_s for o in outcomes]) if outcomes[0].forecast else "n/a"
        got = [o.lead_s or 0.0 for o in outcomes]
        if outcomes[0].forecast:
            leads[scenario] = min(leads.get(scenario, float("inf")), min(got))
        print(f"| {scenario:<22} | {hazard:<16} | {detected:>3}/{len(outcomes):<4} "
              f"| {_span([o.delay_s for o in outcomes]):>18} | {lead:>18} "
              f"| {_span([o.anomaly_delay_s for o in outcomes]):>16} |")

    normal = normal_outcome(0, args.devices, args.days, args.nuisance_interval, settings)
    per_k = 1000.0 * len(normal.hazards) / normal.device_days
    forecasts = sum(d.hazard.endswith("_forecast") for d in normal.hazards)
    print(f"normal data with nuisance days: {args.devices} devices x {args.days} days "
          f"({normal.device_days:,.0f} device-days), reports every "
          f"{args.nuisance_interval:g} s: {len(normal.hazards)} false hazard alarms "
          f"({forecasts} of them pre-warnings) = {per_k:.2f} per 1,000 device-days; "
          f"{normal.anomaly_episodes} learned-anomaly episodes = "
          f"{1000.0 * normal.anomaly_episodes / normal.device_days:.1f} per 1,000 device-days")
    for d in normal.hazards[:10]:
        print(f"  false alarm: {d.device_id} {d.hazard} {d.severity.name} {d.message}")
    worst_lead = min((leads.get(s, 0.0) for s in LEAD_TARGETS), default=0.0)
    met = (detected_all and worst_lead >= LEAD_TARGET_S and per_k <= FALSE_ALARM_TARGET)
    print(f"drill quality: {'all' if detected_all else 'NOT all'} hazards detected; "
          f"worst pre-warning lead on {' / '.join(LEAD_TARGETS)} {worst_lead:.0f} s "
          f"(target >= {LEAD_TARGET_S:.0f}); {per_k:.2f} false hazard alarms per 1,000 "
          f"device-days (target <= {FALSE_ALARM_TARGET:g}); targets "
          f"{'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()

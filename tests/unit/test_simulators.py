"""Simulator logic without a broker: seeded signals, scenarios, the schedule, payloads."""

from __future__ import annotations

import itertools
import math
from typing import Any  # Any: decoded JSON payloads

import orjson
import pytest

from config.settings import DEFAULT_THRESHOLDS, ScenarioRun, load
from shouwang.catalog import EVENTS, METRICS_BY_KEY, DeviceType, metrics_for
from shouwang.models import Device, Location, ReadingKind
from simulators import (
    GAS_LEAK,
    SCENARIOS,
    SOS,
    Community,
    DeviceSignal,
    OutgoingMessage,
    Ramp,
    Scenario,
    ScenarioError,
    ScheduledScenario,
    stable_seed,
)
from simulators.scenarios import check_scenario

EPOCH0 = 1_764_120_000.0  # 2025-11-26 09:20 in China (UTC+8)
DAY_S = 86_400.0


def _device(device_type: DeviceType, index: int = 1, interval: float = 10.0) -> Device:
    location = (Location(lat=30.2741, lon=120.1551) if device_type is DeviceType.WEARABLE
                else Location())
    return Device(id=f"{device_type.value}-{index}", type=device_type, site="sunshine",
                  location=location, report_interval_s=interval)


def _fleet(per_type: int = 3, interval: float = 10.0) -> list[Device]:
    return [_device(t, i, interval) for t in DeviceType for i in range(per_type)]


def _telemetry(messages: list[OutgoingMessage], device_id: str) -> list[dict[str, Any]]:
    return [orjson.loads(m.payload) for m in messages
            if m.device_id == device_id and m.kind is ReadingKind.TELEMETRY]


def test_same_seed_gives_identical_messages() -> None:
    first = Community(_fleet(), seed=11, epoch0=EPOCH0).due(600.0)
    second = Community(_fleet(), seed=11, epoch0=EPOCH0).due(600.0)
    other = Community(_fleet(), seed=12, epoch0=EPOCH0).due(600.0)

    assert len(first) > 100
    assert [(m.topic, m.payload) for m in first] == [(m.topic, m.payload) for m in second]
    assert [m.payload for m in first] != [m.payload for m in other]


def test_a_device_stream_does_not_depend_on_the_rest_of_the_fleet() -> None:
    alone = Community([_device(DeviceType.GAS, 1)], seed=5, epoch0=EPOCH0).due(300.0)
    in_fleet = Community(_fleet(), seed=5, epoch0=EPOCH0).due(300.0)

    assert [m.payload for m in alone] == [m.payload for m in in_fleet if m.device_id == "gas-1"]


def test_stable_seed_is_pinned_so_recorded_drills_replay() -> None:
    # Changing the derivation would silently change every stored drill's data.
    assert stable_seed(7, "gas-1") == 13738502739338423188


@pytest.mark.parametrize("device_type", list(DeviceType))
def test_every_catalog_metric_is_simulated_inside_its_valid_range(
        device_type: DeviceType) -> None:
    devices = [_device(device_type, i, interval=60.0) for i in range(8)]
    community = Community(devices, seed=3, epoch0=EPOCH0)
    expected_keys = {m.key for m in metrics_for(device_type)}

    samples = 0
    for message in community.due(3 * DAY_S):  # three days: daily cycles, battery recharge
        values = orjson.loads(message.payload)["values"]
        assert set(values) == expected_keys
        for key, value in values.items():
            low, high = METRICS_BY_KEY[key].valid_range
            assert low <= value <= high, (key, value)
            assert math.isfinite(value)
        samples += 1
    assert samples == 8 * 3 * 1440


@pytest.mark.parametrize("device_type", list(DeviceType))
def test_an_ordinary_day_raises_no_threshold(device_type: DeviceType) -> None:
    # The baseline must stay on the safe side of every default level 1, or demos alarm falsely.
    community = Community([_device(device_type, i, interval=60.0) for i in range(10)],
                          seed=9, epoch0=EPOCH0)
    rules = [r for r in DEFAULT_THRESHOLDS if r.device_type is device_type]
    for message in community.due(2 * DAY_S):
        values = orjson.loads(message.payload)["values"]
        for rule in rules:
            value, level = values[rule.metric], rule.levels[0]
            assert (value < level) if rule.direction == "above" else (value > level), (
                rule.hazard, value)


def test_baselines_look_like_a_real_community() -> None:
    community = Community(_fleet(per_type=5, interval=60.0), seed=4, epoch0=EPOCH0)
    seen: dict[tuple[str, str], list[float]] = {}
    for message in community.due(DAY_S):
        device_type = message.device_id.split("-")[0]
        for key, value in orjson.loads(message.payload)["values"].items():
            seen.setdefault((device_type, key), []).append(value)

    def span(device_type: str, key: str) -> tuple[float, float]:
        values = seen[(device_type, key)]
        return min(values), max(values)

    expected = {
        ("gas", "lel"): (0.0, 2.0), ("gas", "co"): (0.0, 15.0),
        ("smoke", "smoke"): (0.1, 0.5), ("smoke", "temperature"): (20.0, 26.0),
        ("smoke", "alarm"): (0.0, 0.0), ("water", "level"): (0.0, 0.1),
        ("electrical", "residual_current"): (10.0, 60.0),
        ("electrical", "temperature"): (25.0, 40.0),
        ("wearable", "heart_rate"): (60.0, 90.0), ("wearable", "spo2"): (95.0, 99.0),
        ("wearable", "lat"): (30.2741 - 0.01, 30.2741 + 0.01),
        ("wearable", "lon"): (120.1551 - 0.01, 120.1551 + 0.01),
    }
    for (device_type, key), (low, high) in expected.items():
        lowest, highest = span(device_type, key)
        assert low <= lowest and highest <= high, (device_type, key, lowest, highest)
    co_low, co_high = span("gas", "co")
    assert co_high > co_low + 1.0  # cooking bumps happen


def test_cable_temperature_follows_electrical_load() -> None:
    community = Community([_device(DeviceType.ELECTRICAL, 1, interval=60.0)], seed=2,
                          epoch0=EPOCH0)
    rows = [orjson.loads(m.payload) for m in community.due(DAY_S)]
    # Local hour of each row (UTC+8): the 04:00 trough vs the 20:00 evening peak.
    by_hour: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_hour.setdefault(int(((row["ts"] + 8 * 3600) % DAY_S) // 3600), []).append(row)
    night, evening = by_hour[4], by_hour[20]

    def mean(rows_: list[dict[str, Any]], key: str) -> float:
        return float(sum(r["values"][key] for r in rows_)) / len(rows_)

    assert mean(evening, "current") > 2 * mean(night, "current")
    assert mean(evening, "temperature") > mean(night, "temperature") + 2.0


def test_wearable_steps_grow_by_day_and_restart_at_midnight() -> None:
    community = Community([_device(DeviceType.WEARABLE, 1, interval=300.0)], seed=1,
                          epoch0=EPOCH0)
    rows = [orjson.loads(m.payload) for m in community.due(2 * DAY_S)]
    steps = [r["values"]["steps"] for r in rows]
    drops = [i for i in range(1, len(steps)) if steps[i] < steps[i - 1]]

    assert all(isinstance(s, int) for s in steps)
    assert len(drops) == 2  # two local midnights in two days from 09:20
    assert max(steps) > 1000


def test_battery_drains_slowly() -> None:
    community = Community([_device(DeviceType.GAS, 1, interval=600.0)], seed=1, epoch0=EPOCH0)
    battery = [orjson.loads(m.payload)["values"]["battery"] for m in community.due(10 * DAY_S)]

    assert battery == sorted(battery, reverse=True)
    assert 0.05 < battery[0] - battery[-1] < 2.0


def test_gas_leak_crosses_both_levels_only_after_onset() -> None:
    onset = 120.0
    community = Community([_device(DeviceType.GAS, 1, interval=5.0)], seed=8, epoch0=EPOCH0,
                          runs=[ScheduledScenario(scenario=GAS_LEAK, device_id="gas-1",
                                                  start_s=onset)])
    rows = _telemetry(community.due(onset + 300.0), "gas-1")
    lel = [(r["ts"] - EPOCH0, r["values"]["lel"]) for r in rows]

    assert all(value <= 2.0 for t, value in lel if t < onset)
    first_l1 = next(t for t, value in lel if value >= 25.0)
    first_l2 = next(t for t, value in lel if value >= 50.0)
    assert onset + 15.0 < first_l1 < onset + 60.0   # ~32 s at speed 1
    assert onset + 80.0 < first_l2 < onset + 150.0  # ~108 s
    assert max(value for _, value in lel) <= 60.0
    later = [value for t, value in lel if t >= first_l2]
    assert min(later) >= 50.0  # stays up once there: the leak does not fix itself


def test_speed_compresses_wall_time_but_not_the_physics() -> None:
    def lel_by_sim_time(speed: float) -> list[float]:
        community = Community([_device(DeviceType.GAS, 1, interval=5.0)], seed=8,
                              epoch0=EPOCH0, speed=speed,
                              runs=[ScheduledScenario(scenario=GAS_LEAK, device_id="gas-1",
                                                      start_s=60.0)])
        return [r["values"]["lel"] for r in _telemetry(community.due(400.0), "gas-1")]

    slow = Community([_device(DeviceType.GAS, 1, interval=5.0)], seed=8, epoch0=EPOCH0,
                     speed=10.0)
    first = orjson.loads(slow.due(5.0)[0].payload)
    assert first["ts"] == pytest.approx(EPOCH0 + slow.devices[0].first_report_s / 10.0,
                                        abs=1e-3)
    assert lel_by_sim_time(10.0) == lel_by_sim_time(1.0)


def test_sos_scenario_publishes_one_event_at_onset() -> None:
    wearable = _device(DeviceType.WEARABLE, 1)
    community = Community([wearable], seed=1, epoch0=EPOCH0,
                          runs=[ScheduledScenario(scenario=SOS, device_id=wearable.id,
                                                  start_s=42.0)])
    messages = community.due(120.0)
    events = [m for m in messages if m.kind is ReadingKind.EVENT]

    assert len(events) == 1
    event = events[0]
    assert event.topic == "shouwang/v1/sunshine/wearable-1/event"
    body = orjson.loads(event.payload)
    assert set(body) == {"ts", "seq", "event"}
    assert body["event"] == "sos" and body["event"] in EVENTS
    assert body["ts"] == pytest.approx(EPOCH0 + 42.0)
    # One seq counter per device across telemetry and events.
    seqs = [orjson.loads(m.payload)["seq"] for m in messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    truth = community.ground_truth()
    assert [(g.hazard, g.device_id, g.onset_ts) for g in truth] == [
        ("sos", "wearable-1", EPOCH0 + 42.0)]


def test_telemetry_payloads_follow_the_contract() -> None:
    community = Community(_fleet(), seed=1, epoch0=EPOCH0)
    messages = community.due(120.0)
    last_seq: dict[str, int] = {}
    for message in messages:
        device_type, _ = message.device_id.split("-")
        assert message.topic == f"shouwang/v1/sunshine/{message.device_id}/telemetry"
        assert message.kind is ReadingKind.TELEMETRY and not message.retain
        body = orjson.loads(message.payload)
        assert set(body) == {"ts", "seq", "values"}
        assert isinstance(body["ts"], float) and EPOCH0 <= body["ts"] <= EPOCH0 + 120.0
        assert isinstance(body["seq"], int)
        assert all(isinstance(v, int | float) and not isinstance(v, bool)
                   for v in body["values"].values())
        assert message.readings == len(body["values"]) == len(
            metrics_for(DeviceType(device_type)))
        if message.device_id in last_seq:
            assert body["seq"] == last_seq[message.device_id] + 1
        last_seq[message.device_id] = body["seq"]
    assert len(last_seq) == len(_fleet())


def test_drill_marks_every_payload() -> None:
    community = Community([_device(DeviceType.WEARABLE, 1)], seed=1, epoch0=EPOCH0,
                          drill=True,
                          runs=[ScheduledScenario(scenario=SOS, device_id="wearable-1",
                                                  start_s=5.0)])
    bodies = [orjson.loads(m.payload) for m in community.due(60.0)]
    assert bodies and all(b["drill"] is True for b in bodies)


def test_reports_are_spread_over_the_first_interval_and_then_periodic() -> None:
    devices = [_device(DeviceType.SMOKE, i, interval=30.0) for i in range(200)]
    community = Community(devices, seed=1, epoch0=EPOCH0)
    firsts = [d.first_report_s for d in community.devices]

    assert all(0.0 <= f < 30.0 for f in firsts)
    assert len(set(firsts)) == 200
    # Not bunched: every tenth of the interval gets some of the 200 first reports.
    assert {int(f // 3.0) for f in firsts} == set(range(10))
    ts = [orjson.loads(m.payload)["ts"] for m in community.due(95.0) if m.device_id == "smoke-7"]
    assert [round(b - a, 6) for a, b in itertools.pairwise(ts)] == [30.0] * (len(ts) - 1)
    assert community.next_due_s > 95.0


def test_due_respects_the_limit_and_keeps_order() -> None:
    community = Community(_fleet(), seed=1, epoch0=EPOCH0)
    chunks = []
    while batch := community.due(100.0, limit=7):
        assert len(batch) <= 7
        chunks.extend(batch)
    ts = [orjson.loads(m.payload)["ts"] for m in chunks]
    assert ts == sorted(ts)
    assert [m.payload for m in chunks] == [
        m.payload for m in Community(_fleet(), seed=1, epoch0=EPOCH0).due(100.0)]


def test_statuses_are_retained_words_for_every_device() -> None:
    community = Community(_fleet(per_type=1), seed=1, epoch0=EPOCH0)
    online, offline = community.statuses(online=True), community.statuses(online=False)

    assert {m.payload for m in online} == {b"online"}
    assert {m.payload for m in offline} == {b"offline"}
    assert all(m.retain and m.readings == 0 and m.topic.endswith("/status") for m in online)
    assert sorted(m.device_id for m in online) == sorted(d.id for d in _fleet(per_type=1))


def test_scenario_on_the_wrong_device_type_fails_fast() -> None:
    with pytest.raises(ScenarioError, match="needs a gas device"):
        Community([_device(DeviceType.WEARABLE, 1)], seed=1, epoch0=EPOCH0,
                  runs=[ScheduledScenario(scenario=GAS_LEAK, device_id="wearable-1",
                                          start_s=0.0)])
    with pytest.raises(ScenarioError, match="unknown device"):
        Community([], seed=1, epoch0=EPOCH0,
                  runs=[ScheduledScenario(scenario=GAS_LEAK, device_id="nope", start_s=0.0)])


def test_bad_scenario_data_is_refused() -> None:
    bad_metric = Scenario(name="x", device_type=DeviceType.WATER, description="",
                          expected_hazard="flood", expected_severity=GAS_LEAK.expected_severity,
                          ramps=(Ramp(metric="lel", target=10.0, time_constant_s=1.0),))
    with pytest.raises(ScenarioError, match="no metric 'lel'"):
        check_scenario(bad_metric)
    for scenario in SCENARIOS.values():
        check_scenario(scenario)


def test_unknown_scenario_name_in_config_names_the_key() -> None:
    settings = load(None, sites=[{"id": "s", "name": "S"}],
                    devices=[{"id": "g1", "type": "gas", "site": "s"}],
                    simulator={"scenarios": [ScenarioRun(scenario="meteor", device_id="g1")]})
    with pytest.raises(ScenarioError, match=r"simulator.scenarios\[0\].*'meteor'"):
        Community.from_settings(settings, epoch0=EPOCH0)


def test_every_device_type_has_a_signal_for_every_metric() -> None:
    # A catalog row without a signal model would silently go unsimulated.
    for device_type in DeviceType:
        signal = DeviceSignal(_device(device_type), seed=1)
        values = signal.sample(t_s=0.0, epoch_s=EPOCH0)
        assert set(values) == {m.key for m in metrics_for(device_type)}

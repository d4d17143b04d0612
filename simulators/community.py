"""A simulated community: every device on one schedule, producing the messages due now.

Time here is simulated seconds since start; ``speed`` maps it to wall time (speed 10 means
a 30 s report interval passes in 3 s). Payload ``ts`` is the wall-clock epoch at which the
reading is scheduled, so ingest sees current timestamps, while the physics (daily cycles,
scenario ramps) runs on simulated time. Given the seed and ``epoch0`` the message sequence
is fully determined, which is what lets a drill be replayed.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shouwang.models import Device, ReadingKind
from simulators.devices import DeviceSignal, simulated_device
from simulators.models import GroundTruth, OutgoingMessage, ScheduledScenario, SimulatedDevice
from simulators.payloads import OFFLINE, ONLINE, Channel, encode_event, encode_telemetry, topic_for
from simulators.scenarios import SCENARIOS, ScenarioError, apply_scenarios, check_scenario

if TYPE_CHECKING:
    from config.settings import Settings

__all__ = ["Community"]

_TELEMETRY = 0
_EVENT = 1
_OFFLINE = 2


@dataclass(slots=True)
class _DeviceState:
    simulated: SimulatedDevice
    signal: DeviceSignal
    seq: int
    topics: tuple[str, str, str]  # telemetry, event, status
    runs: tuple[ScheduledScenario, ...]  # every run whose effects reach this device
    offline_from_s: float = float("inf")  # silent from here on (power gone)
    last_values: dict[str, float] | None = None
    frozen: dict[tuple[int, str], float] | None = None


class Community:
    """Devices, their signals and scenario runs; ``due(t)`` pops what is due by ``t``.

    Parameters
    ----------
    devices
        Registered devices to simulate.
    seed
        Seeds every device's signal, start offset and first ``seq``.
    epoch0
        Wall-clock epoch seconds of simulated time 0.
    speed
        Simulated seconds per wall second.
    runs
        Scenarios bound to devices; their types must match.
    drill
        Mark every telemetry and event payload with ``"drill": true``.

    Examples
    --------
    >>> from shouwang.catalog import DeviceType
    >>> gas = Device(id="g1", type=DeviceType.GAS, site="s", report_interval_s=10.0)
    >>> community = Community([gas], seed=1, epoch0=1764120000.0)
    >>> [m.kind.value for m in community.due(19.99)]  # first report within one interval
    ['telemetry', 'telemetry']
    """

    def __init__(self, devices: Sequence[Device], *, seed: int, epoch0: float,
                 speed: float = 1.0, runs: Sequence[ScheduledScenario] = (),
                 drill: bool = False, topic_root: str = "shouwang/v1") -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.epoch0 = epoch0
        self.speed = speed
        self.drill = drill
        by_id = {d.id: d for d in devices}
        runs_by_device: dict[str, list[ScheduledScenario]] = {}
        self._affected: list[tuple[str, ...]] = []  # per run: the device ids it reaches
        for run in runs:
            device = by_id.get(run.device_id)
            if device is None:
                raise ScenarioError(f"scenario {run.scenario.name!r} names unknown device "
                                    f"{run.device_id!r}")
            wanted = run.scenario.device_type
            if wanted is not None and device.type is not wanted:
                raise ScenarioError(
                    f"scenario {run.scenario.name!r} needs a {wanted.value} "
                    f"device; {device.id!r} is {device.type.value}")
            check_scenario(run.scenario)
            reached = _reach(run.scenario.scope, device, devices)
            self._affected.append(reached)
            for device_id in reached:
                runs_by_device.setdefault(device_id, []).append(run)
        self.runs = tuple(runs)
        self._states: list[_DeviceState] = []
        # (due simulated s, tie-breaker, what, device index, scenario event name)
        self._queue: list[tuple[float, int, int, int, str]] = []
        self._order = 0
        for index, device in enumerate(devices):
            simulated = simulated_device(device, seed)
            state = _DeviceState(
                simulated=simulated,
                signal=DeviceSignal(device, seed),
                seq=simulated.first_seq,
                topics=(topic_for(topic_root, device.site, device.id, Channel.TELEMETRY),
                        topic_for(topic_root, device.site, device.id, Channel.EVENT),
                        topic_for(topic_root, device.site, device.id, Channel.STATUS)),
                runs=tuple(runs_by_device.get(device.id, ())),
            )
            self._states.append(state)
            self._push(simulated.first_report_s, _TELEMETRY, index, "")
            for run in state.runs:
                if run.scenario.goes_offline:
                    state.offline_from_s = min(state.offline_from_s, run.onset_s)
                if run.device_id != device.id:
                    continue  # events come only from the device the run is bound to
                for event in run.scenario.events:
                    self._push(run.onset_s + event.after_s, _EVENT, index, event.event)
            if state.offline_from_s < float("inf"):
                self._push(state.offline_from_s, _OFFLINE, index, "")

    @classmethod
    def from_settings(cls, settings: Settings, *, epoch0: float,
                      drill: bool = False) -> Community:
        """The community a config describes; an unknown scenario name fails here, by key."""
        runs = []
        for index, run in enumerate(settings.simulator.scenarios):
            scenario = SCENARIOS.get(run.scenario)
            if scenario is None:
                raise ScenarioError(f"simulator.scenarios[{index}]: unknown scenario "
                                    f"{run.scenario!r} (known: {', '.join(sorted(SCENARIOS))})")
            runs.append(ScheduledScenario(scenario=scenario, device_id=run.device_id,
                                          start_s=run.start_after_s))
        return cls([d.to_device() for d in settings.devices], seed=settings.simulator.seed,
                   epoch0=epoch0, speed=settings.simulator.speed, runs=runs, drill=drill,
                   topic_root=settings.mqtt.topic_root)

    def __len__(self) -> int:
        return len(self._states)

    @property
    def devices(self) -> tuple[SimulatedDevice, ...]:
        return tuple(s.simulated for s in self._states)

    def ground_truth(self) -> list[GroundTruth]:
        """What each scenario run should make the pipeline detect, where, and from when.

        One entry per expected hazard per affected device; a nuisance run adds none.
        """
        sites = {s.simulated.device.id: s.simulated.device.site for s in self._states}
        return [GroundTruth(scenario=run.scenario.name, device_id=device_id,
                            site=sites[device_id], hazard=expected.hazard,
                            severity=expected.severity, onset_ts=self.wall_ts(run.onset_s))
                for run, reached in zip(self.runs, self._affected, strict=True)
                for device_id in reached
                for expected in run.scenario.expectations]

    def affected(self, run: ScheduledScenario) -> tuple[str, ...]:
        """The device ids a run's effects reach (its scope)."""
        return self._affected[self.runs.index(run)]

    def wall_ts(self, t_s: float) -> float:
        """Epoch seconds at which simulated time ``t_s`` happens."""
        return self.epoch0 + t_s / self.speed

    @property
    def next_due_s(self) -> float:
        """Simulated time of the next message (infinity for an empty community)."""
        return self._queue[0][0] if self._queue else float("inf")

    def due(self, t_s: float, limit: int | None = None) -> list[OutgoingMessage]:
        """Messages scheduled at or before simulated time ``t_s``, oldest first."""
        out: list[OutgoingMessage] = []
        queue = self._queue
        while queue and queue[0][0] <= t_s and (limit is None or len(out) < limit):
            at, _, what, index, event = heapq.heappop(queue)
            state = self._states[index]
            if at >= state.offline_from_s and what != _OFFLINE:
                continue  # no power, no messages: the schedule ends here
            if what == _TELEMETRY:
                out.append(self._telemetry(state, at))
                interval = state.simulated.device.report_interval_s
                self._push(at + interval, _TELEMETRY, index, "")
            elif what == _EVENT:
                out.append(self._event(state, at, event))
            else:
                # What the broker publishes for the device once its connection drops.
                out.append(OutgoingMessage(topic=state.topics[2], payload=OFFLINE,
                                           device_id=state.simulated.device.id,
                                           kind=ReadingKind.STATUS, readings=0, retain=True,
                                           t_s=at))
        return out

    def statuses(self, *, online: bool) -> list[OutgoingMessage]:
        """A retained ``online``/``offline`` status for every device."""
        word = ONLINE if online else OFFLINE
        return [OutgoingMessage(topic=s.topics[2], payload=word,
                                device_id=s.simulated.device.id, kind=ReadingKind.STATUS,
                                readings=0, retain=True)
                for s in self._states]

    def _push(self, at: float, what: int, index: int, event: str) -> None:
        self._order += 1
        heapq.heappush(self._queue, (at, self._order, what, index, event))

    def _telemetry(self, state: _DeviceState, t_s: float) -> OutgoingMessage:
        values = state.signal.sample(t_s=t_s, epoch_s=self.epoch0 + t_s)
        if state.runs:
            if state.frozen is None:
                state.frozen = {}
            values = apply_scenarios(values, state.runs, t_s,
                                     device_type=state.simulated.device.type,
                                     previous=state.last_values, frozen=state.frozen)
            state.last_values = values
        state.seq += 1
        payload = encode_telemetry(ts=self.wall_ts(t_s), seq=state.seq, values=values,
                                   drill=self.drill)
        return OutgoingMessage(topic=state.topics[0], payload=payload,
                               device_id=state.simulated.device.id,
                               kind=ReadingKind.TELEMETRY, readings=len(values), t_s=t_s)

    def _event(self, state: _DeviceState, t_s: float, event: str) -> OutgoingMessage:
        # One seq counter per device across telemetry and events, so seq never repeats.
        state.seq += 1
        payload = encode_event(ts=self.wall_ts(t_s), seq=state.seq, event=event,
                               drill=self.drill)
        return OutgoingMessage(topic=state.topics[1], payload=payload,
                               device_id=state.simulated.device.id, kind=ReadingKind.EVENT,
                               readings=1, t_s=t_s)


def _reach(scope: str, device: Device, devices: Sequence[Device]) -> tuple[str, ...]:
    """The ids a scenario bound to ``device`` affects: itself, its building or its site."""
    if scope == "device":
        return (device.id,)
    if scope == "building":
        return tuple(d.id for d in devices if d.site == device.site
                     and d.location.building == device.location.building)
    return tuple(d.id for d in devices if d.site == device.site)

"""Small ready-made communities that carry the scenario library: for tests, demos and drills.

``hazard_testbed`` puts every hazard scenario on its own device in one site, beside
bystanders of every type that should stay quiet, and a building of mixed devices for the
power outage. ``nuisance_testbed`` is a few devices of every type living through the
nuisance day. Both return plain devices and scheduled runs for a ``Community``.
"""

from __future__ import annotations

from shouwang.catalog import DeviceType
from shouwang.models import Device, Location
from simulators.models import ScheduledScenario
from simulators.scenarios import BUILDING_POWER_OUTAGE, NUISANCE_DAY, SCENARIOS

__all__ = ["hazard_testbed", "nuisance_testbed"]

_OUTAGE_BUILDING = "90号楼"


def hazard_testbed(site: str, *, start_s: float = 120.0,
                   report_interval_s: float = 30.0) -> tuple[list[Device], list[ScheduledScenario]]:
    """One device per hazard scenario (id = scenario name, a building each), bystanders in
    their own building, and a three-device building for the power outage.

    >>> devices, runs = hazard_testbed("s1")
    >>> sorted(r.scenario.name for r in runs) == sorted(
    ...     n for n in SCENARIOS if n != NUISANCE_DAY.name)
    True
    """
    devices: list[Device] = []
    runs: list[ScheduledScenario] = []
    floor = 0
    for name, scenario in SCENARIOS.items():
        if scenario.device_type is None or scenario.scope != "device":
            continue  # the nuisance day and the outage have their own places
        floor += 1
        # A building each: scenarios must not add up (two gas leaks in one building are a
        # spreading leak to a correlating detector, not two scenarios).
        device = Device(id=name.replace("_", "-"), type=scenario.device_type, site=site,
                        name=scenario.description.split(":")[0][:60],
                        location=Location(building=f"{floor}号楼", unit="1单元", floor="3",
                                          room="301"),
                        report_interval_s=report_interval_s)
        devices.append(device)
        runs.append(ScheduledScenario(scenario=scenario, device_id=device.id, start_s=start_s))
    for kind in DeviceType:
        devices.append(Device(id=f"bystander-{kind.value}", type=kind, site=site,
                              location=Location(building="80号楼", room="101"),
                              report_interval_s=report_interval_s))
    outage = [Device(id=f"outage-{kind.value}", type=kind, site=site,
                     location=Location(building=_OUTAGE_BUILDING, room="B1"),
                     report_interval_s=report_interval_s)
              for kind in (DeviceType.SMOKE, DeviceType.ELECTRICAL, DeviceType.WATER)]
    devices += outage
    runs.append(ScheduledScenario(scenario=BUILDING_POWER_OUTAGE, device_id=outage[0].id,
                                  start_s=start_s))
    return devices, runs


def nuisance_testbed(site: str, *, per_type: int = 2, report_interval_s: float = 300.0
                     ) -> tuple[list[Device], list[ScheduledScenario]]:
    """``per_type`` devices of every type through the nuisance day from simulated midnight."""
    devices = [Device(id=f"home-{kind.value}-{i}", type=kind, site=site,
                      location=Location(building=f"{i + 1}号楼", room="101"),
                      report_interval_s=report_interval_s)
               for kind in DeviceType for i in range(per_type)]
    return devices, [ScheduledScenario(scenario=NUISANCE_DAY, device_id=devices[0].id,
                                       start_s=0.0)]

"""Detector worker throughput and per-device memory, with every default detector on.

    .venv/bin/python -m bench.detectors [--devices 2000] [--messages 60]
                                        [--memory-devices 100000] [--repeat 3]

Throughput: a community's normal day (simulators.DeviceSignal: a mix of gas, smoke,
water, electrical and wearable devices, one bus message per report) is encoded once,
then one process decodes each message and runs ``DetectorEngine.process`` on it, as the
worker's loop does (publishing and offset commits excluded: they are the bus's cost).
The best of ``--repeat`` runs is reported, engine alone and decode + engine.

Memory: ``tracemalloc`` around building the engine for ``--memory-devices`` devices and
feeding each two reports (every per-device structure is allocated on first use and has
a fixed size after); the registry's ``Device`` objects are config and are built before.
The last line is the figure.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Sequence

from config.settings import DetectorSettings
from detectors import DetectorEngine
from shouwang.catalog import DeviceType, metrics_for
from shouwang.codec import decode_readings, encode_readings
from shouwang.models import Device, Location, Reading
from simulators.devices import DeviceSignal

EPOCH = 1_764_120_000.0
# Shares of a residential community's devices: a gas and a smoke sensor per flat, fewer
# of the rest.
MIX = ((DeviceType.GAS, 0.35), (DeviceType.SMOKE, 0.35), (DeviceType.ELECTRICAL, 0.15),
       (DeviceType.WEARABLE, 0.1), (DeviceType.WATER, 0.05))


def _devices(count: int) -> dict[str, Device]:
    devices: dict[str, Device] = {}
    index = 0
    for device_type, share in MIX:
        for _ in range(max(1, round(count * share))):
            if index == count:
                break
            device_id = f"{device_type.value}-{index:06d}"
            devices[device_id] = Device(
                id=device_id, type=device_type, site="s1", report_interval_s=30.0,
                location=Location(building=f"{index // 200 + 1}号楼", room=f"{index % 200}"))
            index += 1
    return devices


def _messages(devices: dict[str, Device], per_device: int) -> list[bytes]:
    """``per_device`` reports of every device, in time order, one encoded message each."""
    signals = [DeviceSignal(device, seed=7) for device in devices.values()]
    out: list[bytes] = []
    seqs = dict.fromkeys(devices, 0)
    for step in range(per_device):
        t = step * 30.0
        for signal in signals:
            device = signal.device
            ts = EPOCH + t
            seqs[device.id] += 1
            values = signal.sample(t_s=t, epoch_s=ts)
            out.append(encode_readings([
                Reading(ts=ts, device_id=device.id, site=device.site, metric=metric,
                        value=value, seq=seqs[device.id], received_at=ts + 0.2)
                for metric, value in values.items()]))
    return out


def _throughput(devices: dict[str, Device], messages: Sequence[bytes],
                repeat: int) -> tuple[float, float, int, int]:
    decoded = [decode_readings(m) for m in messages]
    readings = sum(len(r) for r in decoded)
    best_engine = best_total = float("inf")
    found = 0
    for _ in range(repeat):
        engine = DetectorEngine(DetectorSettings(), devices, clock=lambda: EPOCH,
                                started_at=EPOCH)
        gc.collect()
        started = time.perf_counter()
        found = 0
        for batch in decoded:
            found += len(engine.process(batch))
        best_engine = min(best_engine, time.perf_counter() - started)

        engine = DetectorEngine(DetectorSettings(), devices, clock=lambda: EPOCH,
                                started_at=EPOCH)
        gc.collect()
        started = time.perf_counter()
        for message in messages:
            engine.process(decode_readings(message))
        best_total = min(best_total, time.perf_counter() - started)
    return readings / best_engine, readings / best_total, readings, found


def _memory(count: int) -> float:
    devices = _devices(count)
    first = [_report(device, EPOCH) for device in devices.values()]
    second = [_report(device, EPOCH + 30.0) for device in devices.values()]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    engine = DetectorEngine(DetectorSettings(), devices, clock=lambda: EPOCH,
                            started_at=EPOCH)
    for batch in first:
        engine.process(batch)
    for batch in second:
        engine.process(batch)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del engine
    return used / count


_NORMAL = {"lel": 0.5, "co": 1.2, "smoke": 0.2, "temperature": 23.0, "alarm": 0.0,
           "level": 0.03, "residual_current": 15.0, "current": 12.0, "heart_rate": 70.0,
           "spo2": 97.0, "steps": 1000.0, "lat": 31.2, "lon": 121.5, "battery": 80.0,
           "rssi": -70.0}


def _report(device: Device, ts: float) -> list[Reading]:
    seq = int(ts - EPOCH) // 30 + 1
    return [Reading(ts=ts, device_id=device.id, site=device.site, metric=m.key,
                    value=_NORMAL[m.key] + seq * 0.01, seq=seq, received_at=ts)
            for m in metrics_for(device.type)]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=60, help="reports per device")
    parser.add_argument("--memory-devices", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    devices = _devices(args.devices)
    messages = _messages(devices, args.messages)
    engine_rate, total_rate, readings, found = _throughput(devices, messages, args.repeat)
    print(f"throughput: {readings:,} readings in {len(messages):,} messages from "
          f"{len(devices):,} devices, {found} detections")
    print(f"engine only: {engine_rate:,.0f} readings/s")
    print(f"decode + engine: {total_rate:,.0f} readings/s")
    per_device = _memory(args.memory_devices)
    print(f"memory: {per_device:,.0f} bytes/device of detector state with "
          f"{args.memory_devices:,} devices")
    print(f"detectors: {engine_rate:,.0f} readings/s (engine), {total_rate:,.0f} readings/s "
          f"(decode + engine), {per_device / 1024:.2f} KB/device")


if __name__ == "__main__":
    main()

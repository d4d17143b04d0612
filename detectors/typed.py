"""Per-type models in the stream: each message scored against its device type's forest.

The engine hands over each telemetry reading of a type that has a model; the reading's
value goes into the device's row of the type's value table (carried forward, so a
message missing one metric still makes a full vector). When a message ends (the next
reading has another device or timestamp) the row is copied out, and at the end of
``DetectorEngine.process`` all of a batch's messages of a type are scored in one
vectorised call. ``confirm`` flagged messages in a row open an episode — one ``ANOMALY``
detection, ``pattern_anomaly`` — and ``clear_after`` calm ones close it.

Per device this holds a row of floats and two small counters in shared numpy arrays;
the models themselves are per type, shared by every device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from config.settings import TrainingSettings
from detectors.anomaly.type_forest import TypeForest, feature_metrics
from shouwang.catalog import METRICS_BY_KEY, DeviceType
from shouwang.models import Detection, DetectionKind, Device, Reading, Severity

__all__ = ["MODEL_HAZARD", "TypeModels"]

MODEL_HAZARD = "pattern_anomaly"  # one hazard per device: its type model's verdict
_SEVERITY = Severity.BLUE  # unusual, not dangerous by itself, like the learned anomaly
_CLOSED = -1


@dataclass(slots=True, kw_only=True)
class _Table:
    """One device type: its model, its devices' last values and episode counters."""

    columns: Mapping[str, int]
    values: np.ndarray        # (devices, metrics), nan until first seen
    run: np.ndarray           # flagged messages in a row (before an episode opens)
    calm: np.ndarray          # -1 outside an episode, else calm messages in a row
    model: TypeForest | None = None
    # The batch's finished messages: (row, copy of its values, its last reading).
    done: list[tuple[int, np.ndarray, Reading]] = field(default_factory=list)


class TypeModels:
    """The per-type models and every device's episode against them.

    Parameters
    ----------
    config
        The ``training`` section (``confirm``, ``clear_after``).
    devices
        The registry; each device gets a row in its type's table.
    """

    def __init__(self, config: TrainingSettings, devices: Mapping[str, Device]) -> None:
        self._config = config
        self._rows: dict[str, int] = {}
        counts: dict[DeviceType, int] = {}
        for device_id in sorted(devices):
            device_type = devices[device_id].type
            if feature_metrics(device_type):
                self._rows[device_id] = counts.get(device_type, 0)
                counts[device_type] = counts.get(device_type, 0) + 1
        self._tables: dict[DeviceType, _Table] = {}
        for device_type, count in counts.items():
            metrics = feature_metrics(device_type)
            if not metrics:
                continue
            self._tables[device_type] = _Table(
                columns={m: i for i, m in enumerate(metrics)},
                values=np.full((count, len(metrics)), np.nan),
                run=np.zeros(count, dtype=np.int32),
                calm=np.full(count, _CLOSED, dtype=np.int32))
        self.active = False  # any model installed: the engine skips us until then
        self._pending: tuple[_Table, int, float, Reading] | None = None

    def install(self, model: TypeForest) -> None:
        """Score this type with ``model`` from now on (a newer version replaces the old)."""
        table = self._tables.get(model.device_type)
        if table is None:
            return
        table.model = model
        self.active = True

    def versions(self) -> dict[str, int]:
        return {t.value: table.model.version for t, table in self._tables.items()
                if table.model is not None}

    def take_rows(self) -> dict[str, int]:
        """Each device's row in its type's table, handed over once (kept with the
        device's state rather than in a dict here)."""
        rows, self._rows = self._rows, {}
        return rows

    def observe(self, device_type: DeviceType, row: int, reading: Reading) -> None:
        """Take one telemetry reading's value; a new message closes the previous one."""
        table = self._tables[device_type]
        if table.model is None:
            return
        column = table.columns.get(reading.metric)
        if column is None:
            return
        pending = self._pending
        if pending is not None and (pending[0] is not table or pending[1] != row
                                    or pending[2] != reading.ts):
            self._close(pending)
        table.values[row, column] = reading.value
        self._pending = (table, row, reading.ts, reading)

    def _close(self, pending: tuple[_Table, int, float, Reading]) -> None:
        table, row, _, reading = pending
        values = table.values[row]
        if not np.isnan(values).any():  # not before every metric was seen once
            table.done.append((row, values.copy(), reading))
        self._pending = None

    def finish(self, now: float, out: list[Detection]) -> None:
        """Score the batch's messages, type by type, and run the episodes."""
        if self._pending is not None:
            self._close(self._pending)
        for table in self._tables.values():
            if not table.done or table.model is None:
                table.done.clear()
                continue
            done, table.done = table.done, []
            model = table.model
            values = np.vstack([v for _, v, _ in done])
            ts = np.fromiter((r.ts for _, _, r in done), dtype=float, count=len(done))
            scores, flagged = model.flag(values, ts)
            for (row, vector, reading), score, odd in zip(done, scores, flagged, strict=True):
                self._episode(table, row, vector, reading, float(score), bool(odd), now, out)

    def _episode(self, table: _Table, row: int, vector: np.ndarray, reading: Reading,
                 score: float, odd: bool, now: float, out: list[Detection]) -> None:
        config = self._config
        calm = int(table.calm[row])
        if odd:
            table.calm[row] = 0 if calm != _CLOSED else _CLOSED
            run = int(table.run[row]) + 1
            table.run[row] = run
            if calm == _CLOSED and run >= config.confirm:
                table.calm[row] = 0
                out.append(self._detection(table, vector, reading, score, now, firing=True))
            return
        table.run[row] = 0
        if calm == _CLOSED:
            return
        calm += 1
        if calm >= config.clear_after:
            table.calm[row] = _CLOSED
            out.append(self._detection(table, vector, reading, score, now, firing=False))
        else:
            table.calm[row] = calm

    @staticmethod
    def _detection(table: _Table, vector: np.ndarray, reading: Reading, score: float,
                   now: float, *, firing: bool) -> Detection:
        model = table.model
        assert model is not None
        metric = model.metrics[model.strangest(vector)]
        value = float(vector[table.columns[metric]])
        description = METRICS_BY_KEY.get(metric)
        label = description.label_zh if description else metric
        unit = f" {description.unit}" if description and description.unit else ""
        head = f"{label} {value:.2f}".rstrip("0").rstrip(".") + unit
        message = (f"{head} 等读数的组合不同于同类设备的常态（{model.device_type.value} "
                   f"模型 v{model.version}，异常分数 {score:.2f}）" if firing
                   else f"{head}，读数组合已恢复常态")
        return Detection(ts=now, device_id=reading.device_id, site=reading.site,
                         hazard=MODEL_HAZARD, kind=DetectionKind.ANOMALY, severity=_SEVERITY,
                         firing=firing, metric=metric, value=value, level=0, message=message,
                         reading_ts=reading.ts, drill=reading.drill)

    def _slot(self, device_type: DeviceType, row: int | None) -> _Table | None:
        return None if row is None else self._tables.get(device_type)

    def firing(self, device_type: DeviceType, row: int | None) -> bool:
        """Whether the device has an open episode."""
        table = self._slot(device_type, row)
        return table is not None and int(table.calm[row]) != _CLOSED

    def dump(self, device_type: DeviceType, row: int | None) -> tuple[int, ...]:
        """Plain state: ``(flagged run, calm or -1)``; the values re-fill in one message."""
        table = self._slot(device_type, row)
        if table is None:
            return ()
        return (int(table.run[row]), int(table.calm[row]))

    def load(self, device_type: DeviceType, row: int | None, saved: tuple[object, ...]) -> None:
        """Restore what ``dump`` gave."""
        self.reset(device_type, row)
        table = self._slot(device_type, row)
        if table is None or not saved:
            return
        run, calm = saved
        table.run[row] = int(run)  # type: ignore[call-overload]  # checked by restore's except
        table.calm[row] = max(int(calm), _CLOSED)  # type: ignore[call-overload]

    def reset(self, device_type: DeviceType, row: int | None) -> None:
        table = self._slot(device_type, row)
        if table is None:
            return
        table.values[row] = np.nan
        table.run[row] = 0
        table.calm[row] = _CLOSED

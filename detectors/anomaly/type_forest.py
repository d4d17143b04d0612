"""One IsolationForest per device type: what a normal message of that type looks like.

A message's feature vector is the type's measured metrics (carried forward when a
message lacks one) plus the local time of day as a point on a circle, so a CO bump at
dinner time is ordinary and the same bump at 3 a.m. is not. Each column is centred on
its training median and scaled by its interquartile range before the forest sees it,
so the split thresholds mean the same for a %LEL and a milliamp column (the time of day
is on the unit circle already and keeps its scale: a history shorter than a day must
not make the next hour look strange).

A forest cannot rank points outside its training data: beyond the last split every
point lands in the same leaf, so 40 ppm scores no higher than the highest CO seen in
training. ``flag`` therefore also marks a message any of whose columns lies more than
``margin`` (in interquartile ranges) beyond the training range; time of day is not
checked that way.

The fitted model is stored as plain numpy arrays (``to_bytes``: an ``.npz`` archive,
read back with ``allow_pickle=False``) plus JSON parameters, never as a pickle: a row
in the database cannot run code when a worker loads it.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass

import numpy as np

from detectors.anomaly.iforest import FlatForest
from shouwang.catalog import DeviceType, metrics_for

__all__ = ["TypeForest", "feature_metrics", "time_features"]

_DAY_S = 86400.0
# Not features: they drift, count or wander by design (battery, steps, position), say
# nothing about the hazard (signal strength), or are a state the rules judge (alarm).
_NOT_FEATURES = frozenset({"battery", "rssi", "steps", "lat", "lon", "alarm"})
_ARRAYS = ("feature", "threshold", "left", "right", "path", "center", "scale", "low", "high")


def feature_metrics(device_type: DeviceType) -> tuple[str, ...]:
    """The metrics of a type's feature vector, in catalogue order.

    >>> feature_metrics(DeviceType.ELECTRICAL)
    ('temperature', 'residual_current', 'current')
    """
    return tuple(m.key for m in metrics_for(device_type) if m.key not in _NOT_FEATURES)


def time_features(ts: np.ndarray, utc_offset_h: float) -> np.ndarray:
    """``(sin, cos)`` of the local time of day per timestamp, shape ``(n, 2)``."""
    angle = 2.0 * math.pi * (((np.asarray(ts, dtype=float) + utc_offset_h * 3600.0)
                              % _DAY_S) / _DAY_S)
    return np.column_stack((np.sin(angle), np.cos(angle)))


@dataclass(frozen=True, slots=True, kw_only=True)
class TypeForest:
    """A trained, versioned per-type model and the threshold calibrated on its rows.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ts = np.arange(2000) * 60.0
    >>> values = np.column_stack((rng.normal(0.5, 0.2, 2000), rng.normal(1.0, 0.3, 2000)))
    >>> model = TypeForest.fit(DeviceType.GAS, values, ts, version=1, n_estimators=50)
    >>> again = TypeForest.from_bytes(model.to_bytes(), model.params())
    >>> odd = np.array([[0.5, 40.0]])
    >>> [bool(f) for f in again.flag(np.vstack((odd, values[:1])), np.array([600.0, 0.0]))[1]]
    [True, False]
    """

    device_type: DeviceType
    version: int
    metrics: tuple[str, ...]
    utc_offset_h: float
    threshold: float
    center: np.ndarray   # per column of the full vector (metrics, then sin/cos)
    scale: np.ndarray
    low: np.ndarray      # training range of the scaled metric columns, less the margin
    high: np.ndarray
    forest: FlatForest

    @classmethod
    def fit(cls, device_type: DeviceType, values: np.ndarray, ts: np.ndarray, *,
            version: int, n_estimators: int = 100, max_samples: int = 256,
            quantile: float = 0.9995, margin: float = 1.0, utc_offset_h: float = 8.0,
            seed: int = 0) -> TypeForest:
        """Fit on ``values`` (one row per message, ``feature_metrics`` columns)."""
        # Imported here: scikit-learn costs a second at start-up, and only fitting needs it.
        from sklearn.ensemble import IsolationForest

        rows = np.column_stack((np.asarray(values, dtype=float),
                                time_features(ts, utc_offset_h)))
        k = rows.shape[1] - 2
        center = np.median(rows, axis=0)
        q75, q25 = np.percentile(rows, [75, 25], axis=0)
        # A constant column (a dry pit) still needs a unit: one hundredth of its level.
        scale = np.maximum(q75 - q25, 1e-2 * (1.0 + np.abs(center)))
        center[k:], scale[k:] = 0.0, 1.0
        scaled = (rows - center) / scale
        forest = IsolationForest(n_estimators=n_estimators,
                                 max_samples=min(max_samples, len(scaled)),
                                 random_state=seed).fit(scaled)
        flat = FlatForest.from_sklearn(forest)
        threshold = float(np.quantile(flat.score(scaled), quantile))
        return cls(device_type=device_type, version=version,
                   metrics=feature_metrics(device_type), utc_offset_h=utc_offset_h,
                   threshold=threshold, center=center, scale=scale,
                   low=scaled[:, :k].min(axis=0) - margin,
                   high=scaled[:, :k].max(axis=0) + margin,
                   forest=flat)

    def score(self, values: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Isolation score per message (vectorised over all rows at once)."""
        return self.flag(values, ts)[0]

    def flag(self, values: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, anomalous)`` per message: above the threshold or out of range."""
        rows = np.column_stack((np.asarray(values, dtype=float),
                                time_features(ts, self.utc_offset_h)))
        scaled = (rows - self.center) / self.scale
        scores = self.forest.score(scaled)
        k = len(self.metrics)
        outside = ((scaled[:, :k] < self.low) | (scaled[:, :k] > self.high)).any(axis=1)
        return scores, (scores >= self.threshold) | outside

    def strangest(self, values: np.ndarray) -> int:
        """Index of the metric furthest from its training median, in its own scale."""
        k = len(self.metrics)
        return int(np.argmax(np.abs((values - self.center[:k]) / self.scale[:k])))

    def params(self) -> dict[str, object]:
        """JSON-safe parameters (stored beside the arrays)."""
        return {"device_type": self.device_type.value, "version": self.version,
                "metrics": list(self.metrics), "utc_offset_h": self.utc_offset_h,
                "threshold": self.threshold, "depth": self.forest.depth,
                "norm": self.forest.norm}

    def to_bytes(self) -> bytes:
        """The arrays as an ``.npz`` archive (no pickled objects)."""
        buffer = io.BytesIO()
        f = self.forest
        np.savez(buffer, feature=f.feature, threshold=f.threshold, left=f.left,
                 right=f.right, path=f.path, center=self.center, scale=self.scale,
                 low=self.low, high=self.high)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes, params: dict[str, object] | str) -> TypeForest:
        """Load what ``to_bytes``/``params`` gave; raises ``ValueError`` if malformed."""
        if isinstance(params, str):
            params = json.loads(params)
        assert isinstance(params, dict)
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in _ARRAYS}
            device_type = DeviceType(str(params["device_type"]))
            metrics = tuple(str(m) for m in params["metrics"])  # type: ignore[attr-defined]
            depth = int(params["depth"])  # type: ignore[call-overload]
            norm = float(params["norm"])  # type: ignore[arg-type]
            threshold = float(params["threshold"])  # type: ignore[arg-type]
            version = int(params["version"])  # type: ignore[call-overload]
            utc_offset_h = float(params["utc_offset_h"])  # type: ignore[arg-type]
        except (KeyError, OSError, TypeError, ValueError, EOFError) as err:
            raise ValueError(f"stored model unusable: {err}") from err
        if metrics != feature_metrics(device_type):
            raise ValueError(f"model trained on {metrics}, the catalogue now has "
                             f"{feature_metrics(device_type)}")
        nodes = arrays["feature"]
        width = len(metrics) + 2
        if (any(arrays[n].shape != nodes.shape for n in ("threshold", "left", "right", "path"))
                or any(arrays[n].shape != (width,) for n in ("center", "scale"))
                or any(arrays[n].shape != (width - 2,) for n in ("low", "high"))
                or nodes.size == 0 or int(nodes.max()) >= width or int(nodes.min()) < 0
                or int(arrays["left"].max()) >= nodes.shape[1]
                or int(arrays["right"].max()) >= nodes.shape[1]
                or int(min(arrays["left"].min(), arrays["right"].min())) < 0):
            raise ValueError("stored model arrays do not fit together")
        forest = FlatForest(feature=nodes.astype(np.intp), threshold=arrays["threshold"],
                            left=arrays["left"].astype(np.intp),
                            right=arrays["right"].astype(np.intp), path=arrays["path"],
                            depth=depth, norm=norm)
        return cls(device_type=device_type, version=version, metrics=metrics,
                   utc_offset_h=utc_offset_h, threshold=threshold, center=arrays["center"],
                   scale=arrays["scale"], low=arrays["low"], high=arrays["high"],
                   forest=forest)

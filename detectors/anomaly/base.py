"""What every streaming anomaly detector shares: the River shape and a score scale.

A detector is fed one feature dict ``x`` at a time (River's convention): ``score_one(x)``
says how unusual ``x`` is, in [0, 1], *before* ``learn_one(x)`` adds it to the model.
``__init__`` stores only hyper-parameters; the learnt state is built on first use, so
``clone()`` (same hyper-parameters, no state) is cheap and a pickle holds the whole state.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Protocol, Self, runtime_checkable

__all__ = ["AnomalyDetector", "Detector", "feature", "squash"]


@runtime_checkable
class AnomalyDetector(Protocol):
    """The River shape: a high score means anomalous."""

    def learn_one(self, x: dict[str, Any]) -> None: ...

    def score_one(self, x: dict[str, Any]) -> float: ...


class Detector:
    """Base class: hyper-parameters in, ``clone`` and a readable ``repr`` out."""

    # Empty, so a subclass kept per device metric on the hot path can be fully slotted.
    __slots__ = ()

    def learn_one(self, x: dict[str, Any]) -> None:
        """Add ``x`` to the model."""
        raise NotImplementedError

    def score_one(self, x: dict[str, Any]) -> float:
        """How anomalous ``x`` is, in [0, 1], without learning it."""
        raise NotImplementedError

    def _params(self) -> dict[str, Any]:
        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name != "self"}

    def clone(self) -> Self:
        """A fresh, untrained detector with the same hyper-parameters."""
        params = {k: v.clone() if isinstance(v, Detector) else v
                  for k, v in self._params().items()}
        return type(self)(**params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"


def feature(x: dict[str, Any], key: str) -> float | None:
    """The finite float at ``x[key]``, or None when it is missing or not a number."""
    value = x.get(key)
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def squash(z: float, half: float) -> float:
    """Map a non-negative deviation to [0, 1): ``half`` maps to 0.5.

    Unlike a Gaussian tail it does not saturate at 1.0 for large deviations, so a
    threshold chosen on one series still ranks the deviations of another.
    """
    z = abs(z)
    if not math.isfinite(z):
        return 1.0
    return z / (z + half)

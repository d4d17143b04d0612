"""Which threshold to freeze for series a detector has not seen, and what it is worth there.

NAB scores a detector at the best threshold for the files scored. When many first
detections sit just above that threshold, the best one is the edge of a cliff: a hair
higher and windows are lost. On other series the cliff is somewhere else, so a threshold
frozen at the edge is worth less there than one a little inside it. The threshold to
freeze is therefore the best of the standard score curve averaged over ``±SMOOTH``.

``cross_validate`` measures both ways of choosing: split the files in two halves (every
category split evenly, at random), choose the threshold on one half, score the other half
with it and the other way round, pool the two held-out halves into one normalised score.

The curves come from ../shared/tools/nab_score.py itself (loaded as a module: its sweep
of every threshold is what the scorer maximises), so these figures agree with its output.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["SMOOTH", "Thresholds", "load_thresholds"]

# Half-width of the averaging window over the score curve (in score units).
SMOOTH = 0.0025
_STEP = 0.0005
_GRID = np.arange(0.0, 1.0 + _STEP / 2, _STEP)


def _scorer_module(path: Path) -> ModuleType:
    name = "nab_score"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    """The standard profile's score curve over any subset of the scored files."""

    scorer: ModuleType
    files: dict[str, Any]           # key -> the scorer's FileRows
    weights: tuple[float, float, float]

    def curve(self, keys: Sequence[str]) -> tuple[np.ndarray, float, float]:
        """Raw score at every threshold of the grid, and the null and perfect raw scores."""
        corpus = self.scorer.make_corpus([self.files[k] for k in keys])
        thresholds, raw = self.scorer.sweep(corpus, *self.weights)
        # thresholds descend; at t the detections are the rows scoring >= t.
        ascending = thresholds[::-1]
        at_or_above = len(thresholds) - np.searchsorted(ascending, _GRID, side="left")
        raw_at = raw[np.maximum(at_or_above - 1, 0)]
        windows = float(corpus.n_windows_scorable)
        return raw_at, -self.weights[2] * windows, self.weights[0] * windows

    def pick(self, raw: np.ndarray, smooth: float) -> int:
        """Grid index of the best threshold of ``raw`` averaged over ``±smooth``."""
        half = round(smooth / _STEP)
        if half == 0:
            return int(np.argmax(raw))
        padded = np.pad(raw, half, mode="edge")
        averaged = np.convolve(padded, np.ones(2 * half + 1) / (2 * half + 1), mode="valid")
        return int(np.argmax(averaged))

    def freeze(self, smooth: float = SMOOTH) -> tuple[float, float]:
        """The threshold to freeze over all files, and the standard score there."""
        raw, null, perfect = self.curve(sorted(self.files))
        best = self.pick(raw, smooth)
        return float(_GRID[best]), 100.0 * (raw[best] - null) / (perfect - null)

    def cross_validate(self, smooths: Sequence[float],
                       repeats: int) -> dict[float, list[float]]:
        """Held-out standard scores for each way of choosing (a half-width of ``smooths``),
        threshold chosen on the other half (see the module); the same halvings for all."""
        by_category: dict[str, list[str]] = {}
        for key in sorted(self.files):
            by_category.setdefault(key.split("/")[0], []).append(key)
        scores: dict[float, list[float]] = {smooth: [] for smooth in smooths}
        for seed in range(repeats):
            rng = random.Random(seed)
            halves: tuple[list[str], list[str]] = ([], [])
            for keys in by_category.values():
                for i, key in enumerate(rng.sample(keys, len(keys))):
                    halves[i % 2].append(key)
            curves = [self.curve(half) for half in halves]
            null = curves[0][1] + curves[1][1]
            perfect = curves[0][2] + curves[1][2]
            for smooth, held_out in scores.items():
                chosen = [self.pick(raw, smooth) for raw, _, _ in curves]
                raw = curves[0][0][chosen[1]] + curves[1][0][chosen[0]]
                held_out.append(100.0 * (raw - null) / (perfect - null))
        return scores


def load_thresholds(results: Path, data_dir: Path, scorer_path: Path) -> Thresholds:
    """Curves over the result CSVs in ``results`` (laid out as the scorer expects)."""
    scorer = _scorer_module(scorer_path)
    windows = json.loads((data_dir / "labels" / "windows_dev.json").read_text())
    files = scorer.load_results(str(results), windows, None, str(data_dir), None, False)
    costs = json.loads((data_dir / "profiles.json").read_text())["standard"]["CostMatrix"]
    return Thresholds(scorer=scorer, files={f.key: f for f in files},
                      weights=(costs["tpWeight"], costs["fpWeight"], costs["fnWeight"]))

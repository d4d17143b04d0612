"""NAB: the ``default`` anomaly detector on the shared NAB subset, scored by nab_score.py.

    .venv/bin/python -m bench.nab [--detector default] [--jobs 2] [--results DIR]

Every labelled series under ../shared/data/nab is scored row by row with a fresh detector
(the same code path as ``shouwang detect-csv``), written as
<results>/<category>/<file>.csv, and scored by ../shared/tools/nab_score.py, which picks
one threshold per profile over all files as NAB does. Prints the standard, low-FP and
low-FN scores, then (for ``default``) the standard score at the frozen threshold
``NAB_THRESHOLD`` and 0.02 either side of it (a plateau, not a knife edge) and per
category at that threshold, then the threshold to freeze and the cross-validated standard
score (bench/nab_threshold.py: the threshold chosen on half of the files, scored on the
other half — what a frozen threshold is worth on series it has not seen); the last line
is the standard score. Needs pandas (for the
scorer).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench.nab_threshold import SMOOTH, load_thresholds
from detectors.anomaly import DETECTORS, make_detector
from detectors.anomaly.ensemble import NAB_THRESHOLD
from detectors.csv_scoring import score_csv

_REPO = Path(__file__).resolve().parent.parent
DATA_DIR = _REPO.parent / "shared" / "data" / "nab"
SCORER = _REPO.parent / "shared" / "tools" / "nab_score.py"
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
# Random halvings of the files for the cross-validated score.
CV_REPEATS = 200
CATEGORIES = ("artificialNoAnomaly", "artificialWithAnomaly", "realAWSCloudwatch",
              "realKnownCause")


def _score_one_file(job: tuple[str, Path, Path]) -> int:
    name, source, target = job
    target.parent.mkdir(parents=True, exist_ok=True)
    return score_csv(make_detector(name), source, target)


def _scorer(data_dir: Path, results: Path, out: Path, *extra: str) -> dict[str, object]:
    windows_file = data_dir / "labels" / "windows_dev.json"
    subprocess.run(
        [sys.executable, str(SCORER), str(results), "--windows", str(windows_file),
         "--profiles", str(data_dir / "profiles.json"), "--data-dir", str(data_dir),
         "--json-out", str(out), *extra],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result: dict[str, object] = json.loads(out.read_text())
    return result


def standard_at(data_dir: Path, results: Path, threshold: float,
                category: str | None = None) -> dict[str, object]:
    """The standard profile's result at a fixed threshold, over one category or all."""
    subset = ("--subset", category) if category else ()
    out = results / f"fixed-{category or 'all'}-{threshold:.6f}.json"
    profiles = _scorer(data_dir, results, out, "--threshold", f"{threshold!r}", *subset)
    standard = profiles["profiles"]["standard"]  # type: ignore[index]
    assert isinstance(standard, dict)
    return standard


def run(detector: str, data_dir: Path, results: Path, jobs: int) -> dict[str, object]:
    """Score every labelled file, run the scorer, return its JSON result."""
    windows_file = data_dir / "labels" / "windows_dev.json"
    keys = sorted(json.loads(windows_file.read_text()))
    todo = [(detector, data_dir / key, results / key) for key in keys]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        rows = sum(pool.map(_score_one_file, todo))
    elapsed = time.perf_counter() - started
    print(f"scored {len(keys)} files, {rows} rows in {elapsed:.1f} s "
          f"({rows / elapsed:,.0f} rows/s with {jobs} processes)")
    return _scorer(data_dir, results, results / "nab_score.json")


def _print_frozen(data_dir: Path, results: Path) -> None:
    for delta in (-0.02, 0.0, 0.02):
        p = standard_at(data_dir, results, NAB_THRESHOLD + delta)
        print(f"standard at frozen {NAB_THRESHOLD:.6f}{delta:+.2f}: {p['score']:6.2f}  "
              f"windows {p['windows_detected']}/{p['windows']}  fp rows {p['fp_rows']}")
    for category in CATEGORIES:
        p = standard_at(data_dir, results, NAB_THRESHOLD, category)
        score = p["score"]
        # A category without windows has no normalised score, only its false positives.
        shown = f"{score:6.2f}" if isinstance(score, float) and score == score else "   n/a"
        print(f"  {category:<22} {shown}  windows {p['windows_detected']}/"
              f"{p['windows']}  fp rows {p['fp_rows']}")


def _print_held_out(data_dir: Path, results: Path) -> None:
    thresholds = load_thresholds(results, data_dir, SCORER)
    frozen, score = thresholds.freeze()
    print(f"threshold to freeze (best of the standard score averaged over ±{SMOOTH}): "
          f"{frozen:.4f}  standard there {score:.2f}")
    held_out_by = thresholds.cross_validate((0.0, SMOOTH), CV_REPEATS)
    for label, smooth in (("the best threshold", 0.0), (f"averaged ±{SMOOTH}", SMOOTH)):
        held_out = held_out_by[smooth]
        print(f"held out, threshold chosen on the other half of the files by {label} "
              f"({len(held_out)} random halvings): mean {statistics.fmean(held_out):.2f}  "
              f"sd {statistics.stdev(held_out):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="default", choices=sorted(DETECTORS))
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--results", type=Path, default=None,
                        help="keep the result CSVs here (default: a temporary folder)")
    parser.add_argument("--jobs", type=int, default=2, help="processes scoring files")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nab-") as tmp:
        results = args.results or Path(tmp)
        profiles = run(args.detector, args.data_dir, results, args.jobs)["profiles"]
        assert isinstance(profiles, dict)
        for name in PROFILES:
            p = profiles[name]
            print(f"{name:<20} {p['score']:6.2f}  threshold {p['threshold']:.6f}  "
                  f"windows {p['windows_detected']}/{p['windows']}  fp rows {p['fp_rows']}")
        if args.detector == "default":
            _print_frozen(args.data_dir, results)
        _print_held_out(args.data_dir, results)
    print(f"NAB standard score ({args.detector}): {profiles['standard']['score']:.2f}")


if __name__ == "__main__":
    main()

"""NAB: the ``default`` anomaly detector on the shared NAB subset, scored by nab_score.py.

    .venv/bin/python -m bench.nab [--detector default] [--jobs 2] [--results DIR]

Every labelled series under ../shared/data/nab is scored row by row with a fresh detector
(the same code path as ``shouwang detect-csv``), written as
<results>/<category>/<file>.csv, and scored by ../shared/tools/nab_score.py, which picks
one threshold per profile over all files as NAB does. Prints the standard, low-FP and
low-FN scores; the last line is the standard score. Needs pandas (for the scorer).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from detectors.anomaly import DETECTORS, make_detector
from detectors.csv_scoring import score_csv

_REPO = Path(__file__).resolve().parent.parent
DATA_DIR = _REPO.parent / "shared" / "data" / "nab"
SCORER = _REPO.parent / "shared" / "tools" / "nab_score.py"
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def _score_one_file(job: tuple[str, Path, Path]) -> int:
    name, source, target = job
    target.parent.mkdir(parents=True, exist_ok=True)
    return score_csv(make_detector(name), source, target)


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
    out = results / "nab_score.json"
    subprocess.run(
        [sys.executable, str(SCORER), str(results), "--windows", str(windows_file),
         "--profiles", str(data_dir / "profiles.json"), "--data-dir", str(data_dir),
         "--json-out", str(out)],
        check=True, stdout=subprocess.DEVNULL)
    result: dict[str, object] = json.loads(out.read_text())
    return result


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
    print(f"NAB standard score ({args.detector}): {profiles['standard']['score']:.2f}")


if __name__ == "__main__":
    main()

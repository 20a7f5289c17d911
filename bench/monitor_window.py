"""The drift monitor's per-window cost at the default window, against Evidently's own bare
``Report([DataDriftPreset()]).run`` on the same frames, in the same run (CPU seconds, median of
--reps, interleaved); target <= 1.2x. The monitor's path is what workers/drift_monitor.py runs
per window: the joined rows (monitoring.joining.Row) made into the window's frame
(monitoring.windows.frame), its bounds, and ``DriftChecker.check`` on the reused reference.
Monitored inputs/s = window rows / the monitor's per-window wall time (one core).

Usage: python bench/monitor_window.py [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
from sklearn import datasets as skd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.drift import DEFAULT_WINDOW, DriftChecker, infer_profile
from monitoring.joining import Row
from monitoring.windows import bounds, frame


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    d = skd.load_digits()
    names = [f"pixel_{i // 8}_{i % 8}" for i in range(64)]
    X = pd.DataFrame(d.data.astype(float), columns=names)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(X))
    reference, pool = X.iloc[order[:1000]], X.iloc[order[1000:]]
    checker = DriftChecker(reference, infer_profile(reference))
    monitor_s, bare_s, wall = [], [], []
    for rep in range(args.reps):
        sample = pool.sample(n=DEFAULT_WINDOW, replace=True, random_state=rep)
        rows = [
            Row(str(i), "m", "1.0.0", list(v), 0, ("q", 0, i), ("r", 0, i), 0.0)
            for i, v in enumerate(sample.to_numpy())
        ]
        t0, w0 = time.process_time(), time.perf_counter()
        checker.check(frame(rows, names))
        bounds(rows)
        monitor_s.append(time.process_time() - t0)
        wall.append(time.perf_counter() - w0)
        t0 = time.process_time()
        Report([DataDriftPreset()]).run(sample, reference)
        bare_s.append(time.process_time() - t0)
    m, b = statistics.median(monitor_s), statistics.median(bare_s)
    print("| measure | value | baseline (same run) | ratio | target |")
    print("|---|---|---|---|---|")
    print(
        f"| monitor per window ({DEFAULT_WINDOW} rows x 64, CPU s) | {m:.3f} | bare "
        f"Report([DataDriftPreset()]).run {b:.3f} | {m / b:.2f} | <= 1.2 |"
    )
    print(
        f"| monitored inputs/s (one core) | {DEFAULT_WINDOW / statistics.median(wall):.0f} | - | - | reported |"
    )
    return 0 if m / b <= 1.2 else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Drift-window benchmark for ml.drift; every number has a baseline measured in the same run.

1. Cost of ``DriftChecker.check`` and of ``check()`` on one digits window (64 columns, 1,000
   reference rows) against Evidently's bare ``Report([DataDriftPreset()]).run`` on the same
   frames (CPU seconds, median of --reps, interleaved); target <= 1.2x. A cProfile says where
   the time goes. --cost-only stops there.
2. False alarms per dataset and window size: --splits stratified 40/60 splits x --windows
   windows; reference = the 40 % split, windows = samples of the held-out 60 %, without
   replacement when the pool is big enough ("sub"), else with it ("boot": the duplicates make
   any test over-confident). Rate = windows reaching ``warning``; baseline = Evidently's default
   methods (``DriftedColumnsCount()``, as in ``DataDriftPreset()``) on the same windows.
3. Detection: mild (20 % of the tested features + 0.5 std) and strong (50 % + 1 std) shifts,
   integral columns by whole units; baseline = the same-distribution share.
4. Candidate methods: the share of columns each Evidently test flags in same-distribution
   windows (``DriftedColumnsCount``: the same tests without ValueDrift's widgets).
5. Default window: the smallest size with false alarms <= 5 % in every "sub" cell and mild /
   strong shifts reaching ``warning`` / ``critical`` in >= 80 % of windows.

About 15 CPU-minutes with the defaults; progress on stderr. Exit status 1 when the cost target
is missed or the picked window is not ``DEFAULT_WINDOW``.

Usage: python bench/drift_window.py [--windows 10] [--splits 4] [--sizes 100,200,500,1000]
                                    [--detect 5] [--reps 3] [--candidates 20]
"""

from __future__ import annotations

import argparse
import cProfile
import math
import pstats
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import DriftedColumnsCount
from evidently.presets import DataDriftPreset
from sklearn import datasets as skd
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.drift import CRITICAL, DEFAULT_WINDOW, WARNING, DriftChecker, check, infer_profile

Frame = pd.DataFrame
Rng = np.random.Generator
DATASETS = ("digits", "iris", "wine", "breast_cancer")
# A p-value test at 0.05 (a calibrated one flags ~5 % of the columns), a distance at
# Evidently's default 0.1. chisquare needs Evidently's categorical columns.
CANDIDATES = {
    "digits": ["ks", "chisquare", "jensenshannon", "psi", "anderson", "cramer_von_mises"],
    "breast_cancer": ["ks", "anderson", "cramer_von_mises", "wasserstein", "jensenshannon", "psi"],
}
DISTANCES = {"jensenshannon", "psi", "wasserstein"}
WHERE = {  # label: (file, function) whose cumulative time is shown as a share of one check
    "ValueDrift widget (plotly)": ("column_statistics.py", "_render"),
    "column statistics + histograms": ("data_drift.py", "get_one_column_drift"),
    "the tests themselves": ("registry.py", "__call__"),
}


def load(name: str) -> tuple[Frame, np.ndarray]:
    bunch = getattr(skd, f"load_{name}")(as_frame=True)
    return bunch.data, bunch.target.to_numpy()


def split(name: str, seed: int) -> tuple[Frame, Frame]:
    X, y = load(name)
    ref, pool = train_test_split(X, test_size=0.6, random_state=seed, stratify=y)
    return ref.reset_index(drop=True), pool.reset_index(drop=True)


def window(pool: Frame, size: int, rng: Rng) -> Frame:
    rows = rng.choice(len(pool), size, replace=size > len(pool))
    return pool.iloc[rows].reset_index(drop=True)


def shift(win: Frame, ref: Frame, cols: list[str], frac: float, k: float, rng: Rng) -> Frame:
    out = win.copy()
    for c in rng.choice(cols, math.ceil(frac * len(cols)), replace=False):
        delta = k * float(ref[c].std())
        integral = bool((ref[c] == ref[c].round()).all())
        out[c] = out[c] + (max(1.0, round(delta)) if integral else delta)
    return out


def rate(shares: Sequence[float], level: float) -> float:
    return float(np.mean(np.asarray(shares) >= level))


def drifted_share(ref: Any, win: Any, metric: DriftedColumnsCount | None = None) -> float:
    snap = Report([metric or DriftedColumnsCount()]).run(win, ref)
    return float(snap.dict()["metrics"][0]["value"]["share"])


def candidates(size: int, n: int) -> list[list[str]]:
    rows = []
    for name, methods in CANDIDATES.items():
        ref, pool = split(name, 0)
        cols = [c for c in ref.columns if ref[c].nunique() > 1]
        wins = [window(pool, size, np.random.default_rng(i)) for i in range(n)]
        for m in methods:
            dd = DataDefinition(
                **{"categorical_columns" if m == "chisquare" else "numerical_columns": cols}
            )
            threshold = 0.1 if m in DISTANCES else 0.05
            metric = DriftedColumnsCount(
                columns=cols,
                per_column_method=dict.fromkeys(cols, m),
                per_column_threshold=dict.fromkeys(cols, threshold),
            )
            reference = Dataset.from_pandas(ref, data_definition=dd)
            shares = [
                drifted_share(reference, Dataset.from_pandas(w, data_definition=dd), metric)
                for w in wins
            ]
            rows.append(
                [name, m, str(threshold), f"{np.mean(shares):.3f}", f"{rate(shares, WARNING):.2f}"]
            )
    return rows


def timed(fn: Callable[[], object]) -> float:
    """CPU seconds of this process: wall time on a shared machine follows the others' load."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def cost(size: int, reps: int) -> dict[str, Any]:
    X, _ = load("digits")
    order = np.random.default_rng(0).permutation(len(X))
    ref = X.iloc[order[:1000]].reset_index(drop=True)
    cur = X.iloc[order[1000 : 1000 + size]].reset_index(drop=True)
    profile = infer_profile(ref)
    out: dict[str, Any] = {"build": timed(lambda: DriftChecker(ref, profile))}
    checker = DriftChecker(ref, profile)
    runs: dict[str, list[float]] = {"check": [], "bare": [], "oneoff": []}
    for _ in range(reps):
        runs["check"].append(timed(lambda: checker.check(cur)))
        runs["bare"].append(timed(lambda: Report([DataDriftPreset()]).run(cur, ref)))
        runs["oneoff"].append(timed(lambda: check(ref, cur, profile)))
    out |= {k: statistics.median(v) for k, v in runs.items()}
    prof = cProfile.Profile()
    prof.runcall(checker.check, cur)
    stats: dict[Any, Any] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = max(v[3] for v in stats.values())
    out["where"] = {
        label: max(
            (v[3] for (f, _, fn), v in stats.items() if (Path(f).name, fn) == key), default=0
        )
        / total
        for label, key in WHERE.items()
    }
    return out


def false_alarms(name: str, sizes: list[int], splits: int, n: int) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for size in sizes:
        ours, base = [], []
        for seed in range(splits):
            ref, pool = split(name, seed)
            checker = DriftChecker(ref, infer_profile(ref))
            rng = np.random.default_rng(1000 + seed)
            for _ in range(n):
                win = window(pool, size, rng)
                ours.append(checker.check(win).share_drifted)
                base.append(drifted_share(ref, win))
        print(f"false alarms: {name} w={size} done", file=sys.stderr, flush=True)
        out[size] = {
            "ours": rate(ours, WARNING),
            "base": rate(base, WARNING),
            "share": float(np.mean(ours)),
            "boot": size > len(pool),
            "alpha": checker.thresholds[checker.tested[0]],
            "tested": len(checker.tested),
        }
    return out


def detection(name: str, sizes: list[int], n: int) -> dict[int, dict[str, Any]]:
    ref, pool = split(name, 0)
    checker = DriftChecker(ref, infer_profile(ref))
    out: dict[int, dict[str, Any]] = {}
    for size in sizes:
        rng = np.random.default_rng(7)
        mild, strong = [], []
        for _ in range(n):
            win = window(pool, size, rng)
            for shares, frac, k in ((mild, 0.2, 0.5), (strong, 0.5, 1.0)):
                shifted = shift(win, ref, checker.tested, frac, k, rng)
                shares.append(checker.check(shifted).share_drifted)
        out[size] = {"mild_warn": rate(mild, WARNING), "strong_crit": rate(strong, CRITICAL)}
        out[size]["cells"] = [
            f"{np.mean(mild):.2f} ({out[size]['mild_warn']:.2f} warning+)",
            f"{np.mean(strong):.2f} ({out[size]['strong_crit']:.2f} critical)",
        ]
    return out


def pick_window(sizes: list[int], fa: dict[str, Any], det: dict[str, Any]) -> int | None:
    for s in sizes:
        alarms_ok = all(fa[d][s]["ours"] <= 0.05 for d in fa if not fa[d][s]["boot"])
        shifts_ok = all(
            det[d][s]["mild_warn"] >= 0.8 and det[d][s]["strong_crit"] >= 0.8 for d in det
        )
        if alarms_ok and shifts_ok:
            return s
    return None


def md(title: str, header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(x) for x in row) + " |" for row in rows] + [""]


def report_cost(c: dict[str, Any]) -> list[str]:
    header = ["measure", "CPU s", "bare DataDriftPreset Report.run (CPU s)", "ratio"]
    rows = [
        [label, f"{c[k]:.2f}", f"{c['bare']:.2f}", f"{c[k] / c['bare']:.2f}"]
        for k, label in (("check", "DriftChecker.check"), ("oneoff", "check() (builds a checker)"))
    ]
    lines = md(
        f"CPU cost per window (digits, 64 columns, 1,000 reference rows, window {DEFAULT_WINDOW};"
        " target <= 1.2)",
        header,
        rows,
    )
    split_ = ", ".join(f"{k} {v:.0%}" for k, v in c["where"].items())
    return [*lines, f"Building a DriftChecker: {c['build']:.2f} s. One check's time: {split_}.", ""]


def report(
    cand: list[list[str]], c: dict[str, Any], fa: dict[str, Any], det: dict[str, Any]
) -> str:
    w, sizes = DEFAULT_WINDOW, list(next(iter(fa.values())))
    lines = report_cost(c)
    rows = []
    for d, cells in fa.items():
        first = cells[sizes[0]]
        rows.append(
            [d, first["tested"], f"{first['alpha']:.4f}"]
            + [
                f"{x['ours']:.3f} / {x['base']:.3f} ({'boot' if x['boot'] else 'sub'})"
                for x in cells.values()
            ]
        )
    lines += md(
        "False alarms: windows reaching warning (share >= 0.1), ours / Evidently defaults",
        ["dataset", "tested", "alpha", *(f"w={s}" for s in sizes)],
        rows,
    )
    rows = [
        [d, s, f"{fa[d][s]['share']:.3f}", *m["cells"]]
        for d, ms in det.items()
        for s, m in ms.items()
    ]
    lines += md(
        "Detection: mean share (rate of warning+ / critical)",
        ["dataset", "window", "same distribution", "mild shift", "strong shift"],
        rows,
    )
    lines += md(
        f"Candidate methods: mean share of columns flagged in same-distribution windows of {w}",
        ["dataset", "method", "threshold", "columns flagged", "windows reaching warning"],
        cand,
    )
    picked = pick_window(sizes, fa, det)
    return "\n".join(
        [*lines, f"Default window picked from these numbers: {picked} (DEFAULT_WINDOW = {w})"]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--windows", type=int, default=10, help="windows per split (x --splits)")
    ap.add_argument("--splits", type=int, default=4)
    ap.add_argument("--sizes", default="100,200,500,1000")
    ap.add_argument("--detect", type=int, default=5, help="shifted windows per kind and size")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cost-only", action="store_true")
    ap.add_argument("--candidates", type=int, default=20, help="windows per candidate method")
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    sizes = [int(s) for s in a.sizes.split(",")]
    t0 = time.monotonic()
    c = cost(DEFAULT_WINDOW, a.reps)
    if a.cost_only:
        print("\n".join(report_cost(c)))
        return 0 if c["check"] / c["bare"] <= 1.2 else 1
    cand = candidates(DEFAULT_WINDOW, a.candidates)
    fa = {d: false_alarms(d, sizes, a.splits, a.windows) for d in DATASETS}
    det = {d: detection(d, sizes, a.detect) for d in DATASETS}
    print(report(cand, c, fa, det))
    print(f"\n({a.splits * a.windows} windows per false-alarm cell; {time.monotonic() - t0:.0f} s)")
    ok = pick_window(sizes, fa, det) == DEFAULT_WINDOW and c["check"] / c["bare"] <= 1.2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Run every benchmark (each on its own private stack, one after the other) and print their tables.

Usage: python bench/run_all.py [--n 20000] [--strict]      (`make bench` runs it with no flags)
Results: bench/results/<name>.json (git-ignored); see bench/README.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import memory
import write_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--n", type=int, default=20000, help="commands in the write-path throughput run"
    )
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    a = ap.parse_args(argv)
    t0 = time.monotonic()
    mem = memory.run()
    wp = write_path.run(n=a.n)
    print("\n## Memory (idle stack)\n")
    print(mem["table"])
    print("\n## Write path\n")
    print(wp["table"])
    print(f"\n({wp['cpus']} CPUs; {time.monotonic() - t0:.0f}s in all; json under bench/results/)")
    complete = wp["throughput"]["complete"] and not mem["missing_components"]
    passed = mem["pass"] and wp["throughput_ratio"] >= 1.0
    if not complete:
        return 1
    return 1 if a.strict and not passed else 0


if __name__ == "__main__":
    raise SystemExit(main())

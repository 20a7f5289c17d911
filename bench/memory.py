"""Memory benchmark: resident memory of the idle local stack.

Starts the private bench stack (bench/_stack.py), lets it sit idle for ~10 s, then sums the RSS of
each component's processes, found by the pids the stack records (never by name):
  kafka            var/bench/kafka/broker.pid (the broker JVM)
  postgres         var/bench/pg/data/postmaster.pid and all its children (backends, workers)
  command-handler, relay, projector, api    var/bench/run/<name>.pid, each with its children

RSS counts shared pages once per process (Postgres' shared_buffers, shared libraries), so the
total is an upper bound; PSS (proportional set size, shared pages split between the processes
that map them) is printed next to it for reference.
Target: total RSS < 3 GiB; ratio = total / 3 GiB.

Usage: python bench/memory.py [--idle-seconds 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil
from _stack import COMPONENTS, bench_stack, markdown_table, stack_processes, write_result

MIB = 1024 * 1024
TARGET_BYTES = 3 * 1024 * MIB


def measure(procs: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in COMPONENTS:
        rss = pss = 0
        pss_ok = True
        pids = []
        for p in procs.get(name, []):
            try:
                rss += p.memory_info().rss
                pids.append(p.pid)
                try:
                    pss += p.memory_full_info().pss
                except (psutil.AccessDenied, AttributeError):
                    pss_ok = False
            except psutil.NoSuchProcess:
                continue
        out[name] = {
            "processes": len(pids),
            "pids": pids,
            "rss_bytes": rss,
            "pss_bytes": pss if pss_ok else None,
        }
    return out


def run(idle_seconds: float = 10.0) -> dict[str, Any]:
    with bench_stack() as s:
        print(f"[memory] stack up; idle for {idle_seconds:.0f}s ...", flush=True)
        time.sleep(idle_seconds)
        per = measure(stack_processes(s))
        settings = {"kafka_heap": s.kafka_heap}
    missing = [k for k, v in per.items() if v["processes"] == 0]
    total = sum(v["rss_bytes"] for v in per.values())
    total_pss = sum(v["pss_bytes"] or 0 for v in per.values())
    data = {
        "name": "memory",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(),
        "machine_memory_bytes": psutil.virtual_memory().total,
        "settings": settings,
        "idle_seconds": idle_seconds,
        "components": per,
        "missing_components": missing,
        "total_rss_bytes": total,
        "total_pss_bytes": total_pss,
        "target_bytes": TARGET_BYTES,
        "ratio": total / TARGET_BYTES,
        "pass": total < TARGET_BYTES and not missing,
    }
    data["table"] = table(data)
    write_result("memory", data)
    return data


def table(d: dict[str, Any]) -> str:
    rows: list[list[Any]] = []
    for name, v in d["components"].items():
        pss = v["pss_bytes"]
        rows.append(
            [
                name,
                v["processes"],
                v["rss_bytes"] / MIB,
                pss / MIB if pss is not None else "n/a",
                v["rss_bytes"] / d["target_bytes"],
                "",
                "",
            ]
        )
    rows.append(
        [
            "**total**",
            sum(v["processes"] for v in d["components"].values()),
            d["total_rss_bytes"] / MIB,
            d["total_pss_bytes"] / MIB,
            d["ratio"],
            "< 1.0 (3 GiB)",
            "PASS" if d["pass"] else "FAIL",
        ]
    )
    return markdown_table(
        ["component", "processes", "RSS MiB", "PSS MiB", "ratio (RSS / 3 GiB)", "target", "result"],
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ap.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    a = ap.parse_args(argv)
    d = run(a.idle_seconds)
    print("\n## Memory (idle stack)\n")
    print(d["table"])
    if d["missing_components"]:
        print(f"\nmissing components (no process found): {d['missing_components']}")
    print("\n(json: bench/results/memory.json)")
    if d["missing_components"]:
        return 1
    return 1 if a.strict and not d["pass"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

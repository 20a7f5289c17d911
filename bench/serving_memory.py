"""Idle RSS of the whole stack with serving: the core services, the deployment saga and the
serving controller with its local Ray and one torch replica serving one promoted version.

Its own stack (var/bench-serving-stack, ports 39192...), started with `veritas up` as a user
would (serving enabled); a version is registered, approved by two, promoted and served; then the
stack idles and every supervised program's process tree is summed (Ray's processes are the
controller's descendants), by pid, never by name. Target: total RSS <= 3.5 GiB.

``python bench/serving_memory.py [--idle-seconds 15]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402

from bench._stack import BENCH_ENV, bench_stack, markdown_table, write_result  # noqa: E402
from config.settings import Settings  # noqa: E402
from tests import deployment_support as d  # noqa: E402
from tests import serving_support as s  # noqa: E402
from tests import training_support as t  # noqa: E402
from veritas import services  # noqa: E402

MIB = 2**20
TARGET = 3.5 * 1024 * MIB
ENV = {
    **BENCH_ENV,
    "VERITAS_VAR_DIR": str(ROOT / "var" / "bench-serving-stack"),
    "VERITAS_KAFKA_PORT": "39192",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:39192",
    "VERITAS_PG_PORT": "35533",
    "VERITAS_API_PORT": "38100",
    "VERITAS_METRICS_PORT_BASE": "39301",
    "VERITAS_SERVING_ENABLED": "true",
    "VERITAS_RAY_TEMP_DIR": "/tmp/ray-vbench",
}


def serve_one(st: Settings) -> str:
    client = t.api(st, "ml_engineer", subject="olga")
    name = t.model(client, "mem")
    (art,) = s.cached_artifacts([1])
    d.register_version(client, st, name, art, "1.0.0")
    d.approve(st, name, "1.0.0")
    t.command(client, "TransitionStage", {"model_name": name, "version": "1.0.0", "stage": "production"})  # fmt: skip
    d.wait_deployment(client, name, lambda x: x["production_version"] == "1.0.0", 300)
    return name


def tree(pid: int) -> list[Any]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def measure(st: Settings) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for name, pid in sorted(services.service_pids(st).items()):
        rss = pss = 0
        procs = tree(pid)
        for p in procs:
            try:
                info = p.memory_full_info()
                rss, pss = rss + info.rss, pss + getattr(info, "pss", info.rss)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        rows.append([name, len(procs), round(rss / MIB), round(pss / MIB)])
        if name == "serving-controller":
            _breakdown(procs)
    return rows


def _breakdown(procs: list[Any]) -> None:
    """The controller's tree process by process (Ray's own processes, the Serve actors)."""
    for p in procs:
        try:
            title = " ".join(p.cmdline())[:70]
            print(f"   {p.pid:>7} {p.memory_info().rss / MIB:7.0f} MiB  {title}", flush=True)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle-seconds", type=float, default=15.0)
    a = ap.parse_args()
    with bench_stack(ENV, "serving-stack") as st:
        s.wait_for(lambda: _ready(st), 300, 1.0)
        serve_one(st)
        print(f"[serving-memory] one version served; idle {a.idle_seconds:.0f} s", flush=True)
        time.sleep(a.idle_seconds)
        rows = measure(st)
    rss, pss = sum(r[2] for r in rows), sum(r[3] for r in rows)
    rows.append(["**total**", sum(r[1] for r in rows), rss, pss])
    table = markdown_table(["program", "processes", "RSS MiB", "PSS MiB"], rows)
    verdict = f"total RSS {rss:,} MiB vs target 3,584 MiB: ratio {rss * MIB / TARGET:.2f} ({'met' if rss * MIB <= TARGET else 'MISSED'})"  # fmt: skip
    print("\n## Idle stack with serving\n\n" + table + "\n\n" + verdict)
    write_result("serving_memory", {"rows": rows, "rss_mib": rss, "pss_mib": pss, "table": table, "verdict": verdict})  # fmt: skip


def _ready(st: Settings) -> bool:
    from config.services import metrics_port

    try:
        url = f"http://127.0.0.1:{metrics_port(st, 'serving-controller')}/metrics"
        return "veritas_serving_ready 1.0" in httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()

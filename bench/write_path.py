"""Write-path benchmark: registry.commands -> command handler -> Postgres event store -> relay ->
registry.events, on a private stack (bench/_stack.py).

1. Baseline A: raw psycopg single-row INSERT + COMMIT into a scratch table on the same Postgres
   (uuid, int, text, ~600-byte bytea: about the size of one stored event), for ~5 s -> rows/s.
   Measured before the throughput run and again at the end; the mean is the baseline (fsync
   speed on a shared machine drifts).
2. Throughput: after a warm-up of --warmup commands (a fresh broker JVM spends ~0.3-0.6 of a core
   on JIT compilation for its first minute of traffic), N RegisterModel commands (distinct names,
   keyed by name) are produced to registry.commands as fast as the client can; the clock runs
   from the first produce until the N-th ModelRegistered event of this run is readable
   (read_committed) on registry.events. ratio = commands/s / raw inserts/s (target >= 1.0).
   CPU seconds of each component during the run are recorded too.
3. Latency at half load: commands at 50% of the measured throughput for ~10 s; each command_id
   carries its send time; latency = receive time of its result on events.results - send time.
4. Baseline B: raw Kafka produce -> consume on a scratch topic at the same rate, same clients.

Usage: python bench/write_path.py [--n 20000] [--warmup 1000] [--latency-seconds 10]
                                  [--raw-seconds 5] [--strict]
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
from _stack import (
    bench_stack,
    cpu_seconds,
    markdown_table,
    scrape_metrics,
    stack_processes,
    wait_quiet,
    write_result,
)
from _write_measures import (
    command_latency,
    kafka_latency,
    raw_insert_baseline,
    signing_cost,
    throughput,
)

from infra import supervisor
from infra.auth import issue_token


def run(
    n: int = 20000,
    latency_seconds: float = 10.0,
    raw_seconds: float = 5.0,
    warmup: int = 1000,
    projector: bool = False,
) -> dict[str, Any]:
    with bench_stack() as s:
        token = issue_token(s, "bench", ["data_scientist"])
        if not projector:
            # The measured path ends on the events topic; the projector (read side) would only
            # take CPU from it on this shared 2-core machine. `--projector` keeps it running.
            # Stopped through the supervisor: a killed process would be restarted at once.
            supervisor.stop(s, "projector")
            print("[write_path] projector stopped (not part of the write path)", flush=True)
        print(f"[write_path] raw INSERT+COMMIT baseline for {raw_seconds:.0f}s ...", flush=True)
        raw = raw_insert_baseline(s, raw_seconds)
        print(f"[write_path] raw: {raw['rows_per_s']:.0f} rows/s", flush=True)
        procs = stack_processes(s)
        me = psutil.Process()
        c0, t0 = cpu_seconds(procs), time.monotonic()
        time.sleep(5.0)
        c1, dt = cpu_seconds(procs), time.monotonic() - t0
        idle_by = {k: (c1[k] - c0[k]) / dt for k in c0}
        idle_rate = sum(idle_by.values())
        print(
            f"[write_path] idle stack CPU: {idle_rate:.2f} cores ("
            + ", ".join(f"{k} {v:.2f}" for k, v in idle_by.items())
            + ")",
            flush=True,
        )
        if warmup:
            print(
                f"[write_path] warm-up: {warmup} commands (JVM JIT, pools, fetch sessions) ...",
                flush=True,
            )
            w = throughput(s, warmup, token, timeout_s=300)
            print(f"[write_path] warm-up: {w['commands_per_s']:.0f} commands/s", flush=True)
            wait_quiet(s, max_s=90.0, threshold=idle_rate * 1.5 + 0.05)
        print(f"[write_path] throughput: {n} RegisterModel commands ...", flush=True)
        handler_url = f"http://127.0.0.1:{s.metrics_port_base}/metrics"
        relay_url = f"http://127.0.0.1:{s.metrics_port_base + 1}/metrics"
        m0 = scrape_metrics(
            handler_url,
            ["veritas_command_batch_seconds_count", "veritas_command_batch_seconds_sum"],
        )
        c0, me0 = cpu_seconds(procs), sum(me.cpu_times()[:2])
        sys0 = psutil.cpu_times()
        load_before = os.getloadavg()
        thr = throughput(s, n, token, timeout_s=max(180.0, n / 20))
        c1, me1 = cpu_seconds(procs), sum(me.cpu_times()[:2])
        sys1 = psutil.cpu_times()
        busy = sum(
            getattr(sys1, f) - getattr(sys0, f)
            for f in ("user", "system", "nice", "irq", "softirq", "steal")
        )
        ours = sum(c1[k] - c0[k] for k in c0) + me1 - me0
        thr["machine_loadavg_1m_before"] = load_before[0]
        thr["other_processes_cpu_seconds"] = max(0.0, busy - ours)  # other sessions on the machine
        m1 = scrape_metrics(
            handler_url,
            ["veritas_command_batch_seconds_count", "veritas_command_batch_seconds_sum"],
        )
        r1 = scrape_metrics(relay_url, ["veritas_relay_events_total"])
        window = thr["seconds_to_last_event"]
        thr["cpu_seconds_by_component"] = {k: c1[k] - c0[k] for k in c0} | {
            "bench client": me1 - me0
        }
        thr["cpu_cores_used_avg"] = (
            sum(thr["cpu_seconds_by_component"].values()) / window if window else None
        )
        batches = m1.get("veritas_command_batch_seconds_count", 0) - m0.get(
            "veritas_command_batch_seconds_count", 0
        )
        bsum = m1.get("veritas_command_batch_seconds_sum", 0) - m0.get(
            "veritas_command_batch_seconds_sum", 0
        )
        thr["handler_batches"] = batches
        thr["handler_avg_batch_size"] = n / batches if batches else None
        thr["handler_busy_seconds"] = bsum
        thr["handler_avg_batch_ms"] = 1000 * bsum / batches if batches else None
        thr["relay_events_total"] = r1.get("veritas_relay_events_total")
        print(
            "[write_path] cpu seconds during the run: "
            + ", ".join(f"{k} {v:.1f}" for k, v in thr["cpu_seconds_by_component"].items())
            + f"; other processes on the machine {thr['other_processes_cpu_seconds']:.1f}",
            flush=True,
        )
        print(
            f"[write_path] throughput: {thr['commands_per_s']:.0f} commands/s "
            f"({thr['events_seen']}/{n} events, results {thr['result_statuses']})",
            flush=True,
        )
        rate = max(1.0, 0.5 * thr["commands_per_s"])
        waited = wait_quiet(s, max_s=90.0, threshold=idle_rate * 1.5 + 0.05)
        print(f"[write_path] waited {waited:.0f}s for the stack to drain its backlog", flush=True)
        print(
            f"[write_path] command latency at {rate:.0f}/s for {latency_seconds:.0f}s ...",
            flush=True,
        )
        c0, me0 = cpu_seconds(procs), sum(me.cpu_times()[:2])
        lat = command_latency(s, token, rate, latency_seconds)
        c1, me1 = cpu_seconds(procs), sum(me.cpu_times()[:2])
        lat["cpu_seconds_by_component"] = {k: c1[k] - c0[k] for k in c0} | {
            "bench client": me1 - me0
        }
        wait_quiet(s, max_s=60.0, threshold=idle_rate * 1.5 + 0.05)
        print(
            f"[write_path] kafka latency at {rate:.0f}/s for {latency_seconds:.0f}s ...", flush=True
        )
        c0, me0 = cpu_seconds(procs), sum(me.cpu_times()[:2])
        klat = kafka_latency(s, token, rate, latency_seconds)
        c1, me1 = cpu_seconds(procs), sum(me.cpu_times()[:2])
        klat["cpu_seconds_by_component"] = {k: c1[k] - c0[k] for k in c0} | {
            "bench client": me1 - me0
        }
        for what, d in (("command latency", lat), ("kafka latency", klat)):
            print(
                f"[write_path] cpu seconds during {what}: "
                + ", ".join(f"{k} {v:.1f}" for k, v in d["cpu_seconds_by_component"].items()),
                flush=True,
            )
        print(
            f"[write_path] raw INSERT+COMMIT baseline again for {raw_seconds:.0f}s ...", flush=True
        )
        raw2 = raw_insert_baseline(s, raw_seconds)
        print(f"[write_path] raw (after): {raw2['rows_per_s']:.0f} rows/s", flush=True)
        signing = signing_cost(s)
        print(f"[write_path] signing: {signing['cpu_us_per_event']:.1f} us CPU/event", flush=True)
        settings = {
            k: getattr(s, k)
            for k in (
                "handler_batch_max",
                "relay_batch_max",
                "projector_batch_max",
                "relay_idle_wait_s",
                "topic_partitions",
                "kafka_heap",
            )
        }
    raw = {"before": raw, "after": raw2, "rows_per_s": (raw["rows_per_s"] + raw2["rows_per_s"]) / 2}
    ratio = thr["commands_per_s"] / raw["rows_per_s"]
    data = {
        "name": "write_path",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(),
        "idle_stack_cpu_cores": idle_rate,
        "idle_stack_cpu_cores_by_component": idle_by,
        "warmup_commands": warmup,
        "projector_running": projector,
        "settings": settings,
        "raw_insert_baseline": raw,
        "throughput": thr,
        "throughput_ratio": ratio,
        "throughput_target": 1.0,
        "signing": signing,
        "command_latency_half_load": lat,
        "kafka_latency_same_rate": klat,
        "latency_ratio_p50": lat["p50_ms"] / klat["p50_ms"] if klat["p50_ms"] else float("nan"),
        "latency_ratio_p99": lat["p99_ms"] / klat["p99_ms"] if klat["p99_ms"] else float("nan"),
    }
    data["table"] = table(data)
    write_result("write_path", data)
    return data


def table(d: dict[str, Any]) -> str:
    thr, raw = d["throughput"], d["raw_insert_baseline"]
    lat, klat = d["command_latency_half_load"], d["kafka_latency_same_rate"]
    rows = [
        [
            f"accepted commands/s (N={thr['n']}, end to end; projector "
            f"{'running' if d.get('projector_running') else 'stopped'})",
            thr["commands_per_s"],
            "raw INSERT+COMMIT rows/s (mean of before/after)",
            raw["rows_per_s"],
            d["throughput_ratio"],
            ">= 1.0",
            "PASS" if d["throughput_ratio"] >= 1.0 and thr["complete"] else "FAIL",
        ],
        [
            "steady commands/s (p10..p90 of arrivals)",
            thr.get("steady_commands_per_s_p10_p90", float("nan")),
            "raw INSERT+COMMIT rows/s",
            raw["rows_per_s"],
            thr.get("steady_commands_per_s_p10_p90", float("nan")) / raw["rows_per_s"],
            "info",
            "",
        ],
        [
            f"command->result p50 ms @ {lat['rate_target_per_s']:.0f}/s",
            lat["p50_ms"],
            "Kafka produce->consume p50 ms",
            klat["p50_ms"],
            d["latency_ratio_p50"],
            "info",
            "",
        ],
        [
            f"command->result p99 ms @ {lat['rate_target_per_s']:.0f}/s",
            lat["p99_ms"],
            "Kafka produce->consume p99 ms",
            klat["p99_ms"],
            d["latency_ratio_p99"],
            "info",
            "",
        ],
    ]
    rows.append(
        [
            "command->result p50 ms, 1st half -> 2nd half",
            f"{lat['p50_ms_first_half']:,.0f} -> {lat['p50_ms_second_half']:,.0f}",
            "rising: the stack does not keep up"
            if lat["p50_ms_second_half"] > 1.2 * lat["p50_ms_first_half"]
            else "steady",
            "",
            "",
            "info",
            "",
        ]
    )
    handler_cpu = (thr.get("cpu_seconds_by_component") or {}).get("command-handler")
    if d.get("signing") and handler_cpu:
        per_command = 1e6 * handler_cpu / thr["n"]
        rows.append(
            [
                "signing CPU per command, us (events signed in the handler)",
                d["signing"]["cpu_us_per_event"],
                "command-handler CPU per command, us (signing included)",
                per_command,
                d["signing"]["cpu_us_per_event"] / per_command,
                "info",
                "",
            ]
        )
    main = markdown_table(
        ["metric", "value", "baseline", "baseline value", "ratio", "target", "result"], rows
    )
    cpu = thr.get("cpu_seconds_by_component") or {}
    if not cpu:
        return main
    n = thr["n"]
    cpu_rows = [[k, 1000 * v / n] for k, v in cpu.items()]
    cpu_rows.append(["**all**", 1000 * sum(cpu.values()) / n])
    other = thr.get("other_processes_cpu_seconds")
    note = (
        f"\n\nCPU during the throughput run (machine: {d['cpus']} CPUs; processes outside this "
        f"stack used {other:.0f} CPU-seconds in the same {thr['seconds_to_last_event']:.0f} s):\n\n"
    )
    return main + note + markdown_table(["component", "CPU ms per accepted command"], cpu_rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--n", type=int, default=20000, help="commands in the throughput run (default 20000)"
    )
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    ap.add_argument("--raw-seconds", type=float, default=5.0)
    ap.add_argument(
        "--warmup",
        type=int,
        default=1000,
        help="commands sent (and not measured) before the throughput run; 0 for none",
    )
    ap.add_argument(
        "--projector",
        action="store_true",
        help="keep the projector (read side) running during the runs; by default it is stopped",
    )
    ap.add_argument(
        "--strict", action="store_true", help="exit 1 when the throughput target is missed"
    )
    a = ap.parse_args(argv)
    d = run(a.n, a.latency_seconds, a.raw_seconds, a.warmup, a.projector)
    print("\n## Write path\n")
    print(d["table"])
    print(f"\n(json: bench/results/write_path.json; {d['cpus']} CPUs)")
    if not d["throughput"]["complete"]:
        return 1
    return 1 if a.strict and d["throughput_ratio"] < 1.0 else 0


if __name__ == "__main__":
    raise SystemExit(main())

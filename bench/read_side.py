"""Read-side benchmark: rebuild throughput, API read throughput and command -> read-model latency,
each as a ratio to a baseline measured in the same run on the same private stack
(bench/_read_stack.py: var/bench-read, Kafka 49092, Postgres 45433, API 48000).

1. Rebuild: load a history (N RegisterModel + U UpdateModelMetadata commands through the real
   write path), wait until the projector has caught up, then time
   `projections.replay.replay(bootstrap(settings), verify=True)` -> records/s.
   Baseline: a raw read_committed confluent-kafka consumer reading the same topics from offset 0
   to the end, touching msg.value() only (run before and after the replay; the mean is used).
   ratio = replay records/s / raw records/s; target >= 0.3.
2. API: GET /models/{name} (random loaded names, with a JWT) vs GET /health on the same server;
   asyncio + httpx.AsyncClient, fixed concurrency, fixed duration, alternated twice.
   ratio = /models req/s / /health req/s; target >= 0.6.
3. Latency: RegisterModel published straight to registry.commands at a steady rate; a psycopg
   connection polls veritas_rm.rm_models for the names (every --poll-ms) and records when each
   appears. Baseline: raw produce -> consume on a scratch topic at the same rate, same message
   size, key and headers, same producer settings. ratio = p99 / p99; target <= 5.

Two info rows bound what any implementation could reach on the same machine:
- rebuild floor: the same consume, with every record COPYed verbatim into a scratch table and the
  events' audit columns inserted into a keyless copy of rm_audit_log (no checks, chains,
  projections, status rows or indexes), as a ratio to the raw consume;
- one transactional hop: produce + commit of one record per Kafka transaction (as the relay runs
  at that rate) -> read_committed consume, against a plain hop measured just before it. The
  command path has a plain hop (command -> handler) and a transactional one (relay -> projector)
  in series, plus two Postgres commits.

Not a test: prints a markdown table and writes bench/results/read_side.json.
Exit status 0 when the measurements completed; 1 when one could not (or, with --strict, when a
target is missed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _read_api import api_reads
from _read_common import TARGETS, CpuMeter, git_state, load_history
from _read_latency import command_to_read_model, raw_kafka_latency
from _read_rebuild import raw_consume, rebuild, replay_floor
from _read_stack import read_stack
from _read_table import table
from _stack import (
    wait_quiet,
    write_result,
)

from config.settings import Settings
from infra.auth import issue_token

# ----------------------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "read_side",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(),
        "args": vars(args),
        "targets": TARGETS,
        "git": git_state(),
    }
    t_start = time.monotonic()
    with read_stack() as s:
        data["settings"] = {
            k: getattr(s, k)
            for k in ("projector_batch_max", "relay_idle_wait_s", "topic_partitions", "kafka_heap")
        }
        token = issue_token(s, "bench", ["data_scientist"])
        meter = CpuMeter(s)

        # 1. history, then rebuild vs raw consume
        print(
            f"[read] loading {args.n} RegisterModel + {args.updates} UpdateModelMetadata ...",
            flush=True,
        )
        meter.start()
        load = load_history(s, token, args.n, args.updates, timeout_s=args.load_timeout)
        load["cpu"] = meter.stop()
        names = load.pop("names")
        print(
            f"[read] history projected after {load['seconds_until_projected']:.1f}s: "
            f"{load['results']} results ({load['accepted']} accepted), {load['audit_rows']} events",
            flush=True,
        )
        data["load"] = load
        if not load["complete"]:
            raise RuntimeError(f"history not fully projected: {load}")
        waited = wait_quiet(s, max_s=30.0, threshold=0.15)
        print(f"[read] stack quiet after {waited:.0f}s", flush=True)

        raw1 = raw_consume(s)
        print(
            f"[read] raw consume: {raw1['records']} records, {raw1['records_per_s']:.0f}/s",
            flush=True,
        )
        meter.start()
        rb = rebuild(s)
        rb["cpu"] = meter.stop()
        print(
            f"[read] replay: {rb['rebuild_records']} records in {rb['rebuild_seconds']:.1f}s "
            f"({rb['rebuild_records_per_s']:.0f}/s)",
            flush=True,
        )
        print(
            f"[read] replay(verify=True): {rb['records']} records in {rb['seconds']:.1f}s "
            f"({rb['records_per_s']:.0f}/s; copy phase {rb['copy_phase_s']:.1f}s), "
            f"digests match {rb['digests_match']}, switched {rb['switched']}; cpu {rb['cpu']['cpu_s']}",
            flush=True,
        )
        raw2 = raw_consume(s)
        print(f"[read] raw consume again: {raw2['records_per_s']:.0f}/s", flush=True)
        raw_rps = (raw1["records_per_s"] + raw2["records_per_s"]) / 2
        floor = replay_floor(s)
        print(f"[read] rebuild floor (COPY + audit insert only): {floor['records_per_s']:.0f}/s")
        data["rebuild_floor"] = floor
        data["rebuild_floor_ratio"] = floor["records_per_s"] / raw_rps
        data["rebuild"] = rb
        data["raw_consume"] = {"before": raw1, "after": raw2, "records_per_s": raw_rps}
        data["rebuild_ratio"] = rb["rebuild_records_per_s"] / raw_rps
        data["verified_rebuild_ratio"] = rb["records_per_s"] / raw_rps

        # 2. API
        wait_quiet(s, max_s=20.0, threshold=0.15)
        clients = [c.strip() for c in args.http_clients.split(",") if c.strip()]
        print(
            f"[read] API ({', '.join(clients)} client): {args.rounds} x ({args.http_seconds:.0f}s"
            f" /health, {args.http_seconds:.0f}s /models/{{name}}) at concurrency"
            f" {args.concurrency} ...",
            flush=True,
        )
        api = api_reads(s, token, names, args.concurrency, args.http_seconds, args.rounds, clients)
        data["api"] = api
        data["api_ratio"] = {c: api[c]["ratio"] for c in clients}

        # 3. latency
        wait_quiet(s, max_s=20.0, threshold=0.15)
        if args.latency_mode == "concurrent":
            # Both streams in the same seconds, the baseline in its own process: the machine's
            # noise (other processes, GC, fsync storms) hits both alike.
            start_at = time.time() + 4.0
            print(
                f"[read] command -> read model and raw Kafka produce -> consume, concurrently,"
                f" at {args.rate:.0f}/s each for {args.lat_seconds:.0f}s ...",
                flush=True,
            )
            child = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--raw-latency-child",
                    json.dumps([args.rate, args.lat_seconds, args.warmup_s, start_at]),
                ],
                stdout=subprocess.PIPE,
                env=os.environ.copy(),
            )
            meter.start()
            try:
                lat = command_to_read_model(
                    s, token, args.rate, args.lat_seconds, args.poll_ms, args.warmup_s, start_at
                )
                child_out, _ = child.communicate(timeout=120)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait(5)
            lat["cpu"] = klat_cpu = meter.stop()
            if child.returncode != 0:
                raise RuntimeError(f"raw latency child failed ({child.returncode})")
            klat = json.loads(child_out.decode().strip().splitlines()[-1])
            klat["cpu"] = klat_cpu
        else:
            print(
                f"[read] command -> read model at {args.rate:.0f}/s for {args.lat_seconds:.0f}s,"
                " then raw Kafka produce -> consume ...",
                flush=True,
            )
            meter.start()
            lat = command_to_read_model(
                s, token, args.rate, args.lat_seconds, args.poll_ms, args.warmup_s
            )
            lat["cpu"] = meter.stop()
            meter.start()
            klat = raw_kafka_latency(s, token, args.rate, args.lat_seconds, args.warmup_s)
            klat["cpu"] = meter.stop()
        lat["mode"] = klat["mode"] = args.latency_mode
        wait_quiet(s, max_s=20.0, threshold=0.15)
        # What Kafka transactions alone cost the path: a plain hop and a transactional hop (one
        # transaction per record, as the relay runs at this rate), one after the other.
        print("[read] one plain hop, then one transactional hop, at the same rate ...")
        plain_hop = raw_kafka_latency(s, token, args.rate, args.lat_seconds, args.warmup_s)
        tlat = raw_kafka_latency(
            s, token, args.rate, args.lat_seconds, args.warmup_s, transactional=True
        )
        klat["plain_hop"], klat["transactional_hop"] = plain_hop, tlat
        data["latency"] = {"command_to_read_model": lat, "raw_kafka": klat}
        p99, kp99 = lat["command_to_read_model"]["p99_ms"], klat["produce_to_consume"]["p99_ms"]
        data["latency_ratio"] = p99 / kp99 if kp99 else float("nan")
        data["latency_ratio_p50"] = (
            lat["command_to_read_model"]["p50_ms"] / klat["produce_to_consume"]["p50_ms"]
        )
        data["complete"] = all(
            (
                load["complete"],
                raw1["complete"],
                raw2["complete"],
                floor["complete"],
                rb["switched"],
                lat["complete"],
                klat["complete"],
                plain_hop["complete"],
                tlat["complete"],
            )
        ) and all(api[c][k]["non_200"] == 0 for c in clients for k in ("model", "health"))
    data["total_seconds"] = time.monotonic() - t_start
    data["table"] = table(data)
    write_result("read_side", data)
    return data


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=20000, help="RegisterModel commands in the history")
    ap.add_argument("--updates", type=int, default=2000, help="UpdateModelMetadata commands")
    ap.add_argument("--load-timeout", type=float, default=180.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--http-seconds", type=float, default=6.0, help="per endpoint per round")
    ap.add_argument(
        "--http-clients", default="httpx,raw", help="load generators, in order: httpx and/or raw"
    )
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rate", type=float, default=50.0, help="commands/s for the latency run")
    ap.add_argument("--lat-seconds", type=float, default=10.0)
    ap.add_argument("--poll-ms", type=float, default=5.0, help="read-model polling interval")
    ap.add_argument("--warmup-s", type=float, default=1.0, help="latency samples left out")
    ap.add_argument(
        "--latency-mode",
        choices=("concurrent", "sequential"),
        default="concurrent",
        help="run the command stream and the raw Kafka baseline at the same time (default;"
        " the baseline in its own process) or one after the other",
    )
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--raw-latency-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.raw_latency_child:  # the concurrent baseline's process (stack env inherited)
        rate, seconds, warmup_s, start_at = json.loads(args.raw_latency_child)
        s = Settings()
        res = raw_kafka_latency(
            s, issue_token(s, "bench", ["data_scientist"]), rate, seconds, warmup_s, start_at
        )
        print(json.dumps(res))
        return 0
    try:
        d = run(args)
    except (RuntimeError, AssertionError) as exc:
        print(f"[read] could not complete: {exc}", file=sys.stderr)
        return 1
    print()
    print(d["table"])
    print(f"\n[read] {d['total_seconds']:.0f}s in all; results in bench/results/read_side.json")
    if not d["complete"]:
        return 1
    missed = (
        d["rebuild_ratio"] < TARGETS["rebuild"]
        or min(d["api_ratio"].values()) < TARGETS["api"]
        or d["latency_ratio"] > TARGETS["latency"]
    )
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())

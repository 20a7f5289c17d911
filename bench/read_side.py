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
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import psutil
import psycopg
from _read_stack import read_stack
from _stack import (
    COMPONENTS,
    command_envelope,
    consumer_at_end,
    markdown_table,
    percentile,
    produce,
    producer,
    stack_processes,
    wait_quiet,
    write_result,
)
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from config.settings import Settings
from infra.auth import issue_token
from infra.kafka import transactional_producer
from projections.digest import digest
from projections.replay import TOPICS, replay, verify_chains
from veritas.bootstrap import bootstrap

COMMANDS_TOPIC = "registry.commands"
SCRATCH_TOPIC = "bench.read-latency"
TEXT = "Benchmark model registered by bench/read_side.py; the text only gives the event a size. "
TARGETS = {"rebuild": 0.3, "api": 0.6, "latency": 5.0}


# ---------------------------------------------------------------------------------------- helpers


def register_envelope(command_id: str, name: str) -> bytes:
    payload = {
        "name": name,
        "description": TEXT,
        "intended_use": "read-side measurement",
        "limitations": "none: synthetic",
        "tags": {"bench": "read_side", "team": f"t{hash(name) % 7}"},
    }
    return command_envelope(command_id, "RegisterModel", 2, payload)


def update_envelope(command_id: str, name: str) -> bytes:
    payload = {"name": name, "description": TEXT + "(updated)", "tags": {"reviewed": "yes"}}
    return command_envelope(command_id, "UpdateModelMetadata", 1, payload)


def git_state() -> dict[str, Any]:
    """The commit measured, and the core files that differed from it (the tree may be dirty)."""
    root = Path(__file__).resolve().parent.parent

    def git(*a: str) -> str:
        try:
            return subprocess.run(
                ["git", *a], cwd=root, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = [line[3:] for line in git("status", "--porcelain", "-uno").splitlines()]
    return {"head": git("rev-parse", "--short", "HEAD"), "modified": dirty}


def stats_ms(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else float("nan"),
    }


class CpuMeter:
    """CPU seconds of each stack component and of this process between start() and stop().

    The process tree of each component is re-read every 0.25 s, so Postgres backends that start
    (and end) during the window count too (a backend that lives under 0.25 s may be missed)."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.me = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        for name, plist in stack_processes(self.s).items():
            for p in plist:
                try:
                    t = p.cpu_times()
                except psutil.Error:
                    continue
                key = (name, p.pid)
                if key not in self.first:
                    self.first[key] = t.user + t.system if self.initial else 0.0
                self.last[key] = t.user + t.system

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            self._sample()

    def start(self) -> None:
        self.first: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}
        self.initial = True
        self._sample()
        self.initial = False  # processes first seen later started inside the window
        me = self.me.cpu_times()
        self.me0 = me.user + me.system
        self.t0 = time.monotonic()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._sample()
        wall = time.monotonic() - self.t0
        me = self.me.cpu_times()
        used: dict[str, float] = dict.fromkeys(COMPONENTS, 0.0)
        for (name, pid), last in self.last.items():
            used[name] += last - self.first[(name, pid)]
        used["bench client"] = me.user + me.system - self.me0
        used = {k: round(v, 2) for k, v in used.items()}
        return {
            "wall_s": round(wall, 2),
            "cpu_s": used,
            "cores": round(sum(used.values()) / wall, 2),
        }


# ------------------------------------------------------------------------------ 1. load + rebuild


def read_model_counts(conn: psycopg.Connection, schema: str) -> tuple[int, int, int, int]:
    """(results, accepted results, events those results produced, rows in the audit log)"""
    row = conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE status = 'accepted'),"
        f" coalesce(sum(jsonb_array_length(events)) FILTER (WHERE status = 'accepted'), 0),"
        f" (SELECT count(*) FROM {schema}.rm_audit_log) FROM {schema}.rm_command_status"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def load_history(s: Settings, token: str, n: int, updates: int, timeout_s: float) -> dict[str, Any]:
    prefix = f"rb{uuid.uuid4().hex[:6]}-"
    headers = [("authorization", f"Bearer {token}".encode())]
    names = [f"{prefix}{i:06d}" for i in range(n)]
    p = producer(s, **{"linger.ms": 5})
    t0 = time.monotonic()
    for i, name in enumerate(names):
        produce(p, COMMANDS_TOPIC, name, register_envelope(f"{prefix}c{i:06d}", name), headers)
    step = max(1, n // updates) if updates else 1
    for j in range(updates):
        name = names[(j * step) % n]  # same key as its RegisterModel: same partition, after it
        produce(p, COMMANDS_TOPIC, name, update_envelope(f"{prefix}u{j:06d}", name), headers)
    left = p.flush(60)
    produce_s = time.monotonic() - t0
    total = n + updates
    print(f"[read] produced {total} commands in {produce_s:.1f}s ({left} unsent)", flush=True)
    counts = (0, 0, 0, 0)
    last_print = time.monotonic()
    with psycopg.connect(s.dsn, autocommit=True) as conn:
        while time.monotonic() - t0 < timeout_s:
            counts = read_model_counts(conn, s.read_schema)
            results, _, events, audit = counts
            if results >= total and audit >= events:
                break
            if time.monotonic() - last_print > 10:
                print(f"[read]   projected {results}/{total} results, {audit} events", flush=True)
                last_print = time.monotonic()
            time.sleep(0.5)
    results, accepted, events, audit = counts
    return {
        "register_commands": n,
        "update_commands": updates,
        "produce_s": produce_s,
        "seconds_until_projected": time.monotonic() - t0,
        "results": results,
        "accepted": accepted,
        "events": events,
        "audit_rows": audit,
        "complete": results >= total and audit >= events and accepted == total,
        "names": names,
    }


def _ends(c: Consumer) -> dict[tuple[str, int], int]:
    ends: dict[tuple[str, int], int] = {}
    for topic in TOPICS:
        for p in c.list_topics(topic, timeout=10).topics[topic].partitions:
            ends[(topic, p)] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
    return ends


class FromZero:
    """Every record of the replay's topics from offset 0 to the end they had at the start,
    read_committed, in the batches consume() returns."""

    def __init__(self, s: Settings, group: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": s.kafka_bootstrap_servers,
                "group.id": f"{group}-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self.todo = {k: v for k, v in _ends(self.consumer).items() if v > 0}
        self.consumer.assign([TopicPartition(t, p, 0) for (t, p) in self.todo])

    def batches(self, t0: float, timeout_s: float) -> Iterator[list[Message]]:
        c, todo = self.consumer, self.todo
        while todo and time.perf_counter() - t0 < timeout_s:
            yield [m for m in c.consume(10000, 0.05) if not m.error()]
            for tp in c.position([TopicPartition(t, p) for (t, p) in todo]):
                if tp.offset >= todo[(tp.topic, tp.partition)]:
                    del todo[(tp.topic, tp.partition)]

    @property
    def complete(self) -> bool:
        return not self.todo

    def close(self) -> None:
        self.consumer.close()


def raw_consume(s: Settings, timeout_s: float = 120.0) -> dict[str, Any]:
    """Read every record of the replay's topics from offset 0 to the current end, read_committed,
    touching msg.value() only. Timed from the consumer's creation (the replay's time includes its
    setup as well)."""
    t0 = time.perf_counter()
    reader = FromZero(s, "bench-read-raw")
    records = nbytes = 0
    for batch in reader.batches(t0, timeout_s):
        for m in batch:
            v = m.value()
            nbytes += len(v) if v else 0
        records += len(batch)
    seconds = time.perf_counter() - t0
    reader.close()
    return {
        "records": records,
        "bytes": nbytes,
        "seconds": seconds,
        "records_per_s": records / seconds,
        "complete": reader.complete,
    }


_FLOOR_AUDIT = """
INSERT INTO bench_floor.audit (aggregate_id, version, aggregate_type, event_id, type, actor,
    occurred_at, correlation_id, causation_id, envelope, topic, kafka_partition, kafka_offset)
SELECT (v->>'aggregate_id')::uuid, (v->>'version')::int, v->>'aggregate_type',
       (v->>'event_id')::uuid, v->>'type', v->>'actor', (v->>'occurred_at')::timestamptz,
       v->>'correlation_id', v->>'causation_id', v, topic, p, o
  FROM bench_floor.staged WHERE topic <> 'events.results'
"""


def replay_floor(s: Settings, timeout_s: float = 120.0) -> dict[str, Any]:
    """The least a rebuild into this Postgres must do, timed like raw_consume: read the same
    topics from offset 0 (read_committed) and COPY every record verbatim into an unlogged scratch
    table (values as jsonb), then insert each event's columns into a table shaped like
    rm_audit_log without its keys and indexes. No checks, no chains, no projections, no status
    rows: a rebuild cannot be faster than this on the same machine."""
    with psycopg.connect(s.dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS bench_floor CASCADE")
        conn.execute("CREATE SCHEMA bench_floor")
        conn.execute(
            "CREATE UNLOGGED TABLE bench_floor.staged (topic text, p int, o bigint, v jsonb)"
        )
        conn.execute(f"CREATE TABLE bench_floor.audit (LIKE {s.read_schema}.rm_audit_log)")
        t0 = time.perf_counter()
        reader = FromZero(s, "bench-read-floor")
        records = 0
        with conn.cursor() as cur, cur.copy("COPY bench_floor.staged FROM STDIN") as copy:
            for batch in reader.batches(t0, timeout_s):
                for m in batch:
                    copy.write_row(
                        (m.topic(), m.partition(), m.offset(), (m.value() or b"").decode())
                    )
                records += len(batch)
        reader.close()
        copied = time.perf_counter()
        conn.execute(_FLOOR_AUDIT)
        seconds = time.perf_counter() - t0
        conn.execute("DROP SCHEMA bench_floor CASCADE")
    return {
        "records": records,
        "seconds": seconds,
        "copy_phase_s": copied - t0,
        "records_per_s": records / seconds,
        "complete": reader.complete,
    }


def rebuild(s: Settings) -> dict[str, Any]:
    marks: list[tuple[float, int, int]] = []

    def progress(done: int, total: int) -> None:
        marks.append((time.monotonic(), done, total))

    c = bootstrap(s)
    # The target is on the rebuild itself (every chain checked, no digests); `--verify` then adds
    # the two digests and is reported beside it.
    plain = replay(c, verify=False)
    if plain.mode != "bulk":
        raise RuntimeError(f"the rebuild fell back to record by record: {plain.fallback_reason}")
    marks.clear()
    t0 = time.monotonic()
    rep = replay(c, verify=True, progress=progress)
    wall = time.monotonic() - t0
    c.close()
    copy_end = next((t for t, done, total in marks if done >= total), marks[-1][0] if marks else t0)
    copy_records = marks[-1][1] if marks else 0
    batches = len(marks)
    out: dict[str, Any] = {
        "rebuild_records": plain.records,
        "rebuild_seconds": plain.seconds,
        "rebuild_records_per_s": plain.records / plain.seconds,
        "rebuild_chains_checked": plain.chains_checked,
        "records": rep.records,
        "seconds": rep.seconds,
        "records_per_s": rep.records / rep.seconds if rep.seconds else float("nan"),
        "wall_s": wall,
        "copy_phase_s": copy_end - t0,
        "copy_phase_records": copy_records,
        "copy_phase_records_per_s": copy_records / (copy_end - t0) if copy_end > t0 else None,
        "after_copy_s": rep.seconds - (copy_end - t0),
        "batches": batches,
        "chains_checked": rep.chains_checked,
        "chain_break": None if rep.chain_break is None else str(rep.chain_break),
        "digests_match": rep.digests_match,
        "switched": rep.switched,
    }
    # Where the rest of the time goes: time the two post-copy steps again on the (now live) schema.
    with psycopg.connect(s.dsn, autocommit=True) as conn:
        t = time.monotonic()
        verify_chains(conn, s.read_schema)
        out["verify_chains_s_rerun"] = time.monotonic() - t
        t = time.monotonic()
        digest(conn, s.read_schema)
        out["digest_one_schema_s_rerun"] = time.monotonic() - t
    return out


# ------------------------------------------------------------------------------------------ 2. API


async def _drive(
    worker: Callable[[], Awaitable[None]],
    concurrency: int,
    latencies: list[float],
    statuses: dict[int, int],
) -> dict[str, Any]:
    """Run `concurrency` copies of `worker` to the end; what they recorded, with the wall time."""
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "latencies": latencies,
        "statuses": statuses,
    }


async def _httpx_round(
    base_url: str, paths: list[str], headers: dict[str, str], concurrency: int, seconds: float
) -> dict[str, Any]:
    """`concurrency` coroutines sharing one httpx.AsyncClient, each sending GETs back to back."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        stop = loop.time() + seconds

        async def worker() -> None:
            rnd = random.Random()
            while loop.time() < stop:
                path = paths[rnd.randrange(len(paths))]
                t = time.perf_counter()
                r = await client.get(path, headers=headers)
                latencies.append(time.perf_counter() - t)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        return await _drive(worker, concurrency, latencies, statuses)


async def _raw_round(
    base_url: str, paths: list[str], headers: dict[str, str], concurrency: int, seconds: float
) -> dict[str, Any]:
    """The same load from a minimal HTTP/1.1 keep-alive client on asyncio streams (one connection
    per coroutine, pre-encoded requests, Content-Length framing): a few times cheaper per request
    than httpx, so on a 2-core machine more of the CPU is left to the server being measured."""
    url = httpx.URL(base_url)
    host, port = url.host, url.port or 80
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    requests = [
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode() for path in paths
    ]
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    stop = loop.time() + seconds

    async def worker() -> None:
        rnd = random.Random()
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while loop.time() < stop:
                req = requests[rnd.randrange(len(requests))]
                t = time.perf_counter()
                writer.write(req)
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                status = int(lines[0].split(b" ", 2)[1])
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in lines[1:]
                    if line[:15].lower() == b"content-length:"
                )
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    return await _drive(worker, concurrency, latencies, statuses)


CLIENTS = {"httpx": _httpx_round, "raw": _raw_round}


def api_reads(
    s: Settings,
    token: str,
    names: list[str],
    concurrency: int,
    seconds: float,
    rounds: int,
    clients: list[str],
) -> dict[str, Any]:
    """For each client: `rounds` x (/health for `seconds`, then /models/{name} for `seconds`)."""
    targets = {
        "health": (["/health"], {}),
        "model": ([f"/models/{n}" for n in names], {"authorization": f"Bearer {token}"}),
    }
    # Sanity: one of each must answer 200.
    with httpx.Client(base_url=s.api_url, timeout=10) as cl:
        for key, (paths, hdrs) in targets.items():
            r = cl.get(paths[0], headers=hdrs)
            if r.status_code != 200:
                raise RuntimeError(f"{key}: GET {paths[0]} -> {r.status_code} {r.text[:200]}")
    meter = CpuMeter(s)
    out: dict[str, Any] = {
        "concurrency": concurrency,
        "seconds_per_round": seconds,
        "rounds": rounds,
    }
    for client in clients:
        load = CLIENTS[client]
        agg: dict[str, dict[str, Any]] = {
            k: {
                "requests": 0,
                "seconds": 0.0,
                "latencies": [],
                "statuses": {},
                "rounds": [],
                "cpu": [],
            }
            for k in targets
        }
        for paths, hdrs in targets.values():  # warm-up, not counted
            asyncio.run(load(s.api_url, paths, hdrs, concurrency, 1.0))
        for rnd in range(rounds):
            for key, (paths, hdrs) in targets.items():
                meter.start()
                res = asyncio.run(load(s.api_url, paths, hdrs, concurrency, seconds))
                cpu = meter.stop()
                a = agg[key]
                a["requests"] += res["requests"]
                a["seconds"] += res["seconds"]
                a["latencies"] += res["latencies"]
                for code, cnt in res["statuses"].items():
                    a["statuses"][code] = a["statuses"].get(code, 0) + cnt
                a["rounds"].append(res["requests"] / res["seconds"])
                a["cpu"].append(cpu)
                c = cpu["cpu_s"]
                print(
                    f"[read]   {client} round {rnd + 1} {key}: {res['requests'] / res['seconds']:.0f}"
                    f" req/s; cpu s: api {c['api']:.1f}, postgres {c['postgres']:.1f},"
                    f" client {c['bench client']:.1f} in {cpu['wall_s']:.0f}s",
                    flush=True,
                )
        out[client] = {}
        for key, a in agg.items():
            out[client][key] = {
                "requests": a["requests"],
                "req_per_s": a["requests"] / a["seconds"],
                "req_per_s_by_round": a["rounds"],
                "statuses": {str(k): v for k, v in a["statuses"].items()},
                "non_200": sum(v for k, v in a["statuses"].items() if k != 200),
                **stats_ms(a["latencies"]),
                "api_cpu_ms_per_request": 1000
                * sum(c["cpu_s"]["api"] for c in a["cpu"])
                / max(1, a["requests"]),
                "postgres_cpu_ms_per_request": 1000
                * sum(c["cpu_s"]["postgres"] for c in a["cpu"])
                / max(1, a["requests"]),
                "client_cpu_ms_per_request": 1000
                * sum(c["cpu_s"]["bench client"] for c in a["cpu"])
                / max(1, a["requests"]),
                "cpu_by_round": a["cpu"],
            }
        out[client]["ratio"] = (
            out[client]["model"]["req_per_s"] / out[client]["health"]["req_per_s"]
        )
    return out


# -------------------------------------------------------------------------------------- 3. latency


def _paced_send(
    p: Producer,
    topic: str,
    keys: list[str],
    build: Any,
    headers: list[Any],
    rate: float,
    sent: dict[str, int],
    sent_order: list[str],
    *,
    transactional: bool = False,
) -> float:
    t0 = time.perf_counter()
    for i, key in enumerate(keys):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        value = build(key)
        sent[key] = time.perf_counter_ns()
        if transactional:
            p.begin_transaction()
        produce(p, topic, key, value, headers)
        if transactional:
            p.commit_transaction(30)
        sent_order.append(key)
    p.flush(30)
    return time.perf_counter() - t0


def _summarise(
    keys: list[str], sent: dict[str, int], seen: dict[str, int], t_first: int, warmup_s: float
) -> list[float]:
    """Latencies (s) of the keys seen, leaving out those sent in the first warmup_s seconds."""
    return [
        (seen[k] - sent[k]) / 1e9
        for k in keys
        if k in seen and k in sent and (sent[k] - t_first) / 1e9 >= warmup_s
    ]


def _sleep_until(start_at: float | None) -> None:
    """Both latency streams start sending at the same wall-clock second (concurrent mode)."""
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))


def command_to_read_model(
    s: Settings,
    token: str,
    rate: float,
    seconds: float,
    poll_ms: float,
    warmup_s: float,
    start_at: float | None = None,
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    total = max(1, int(rate * seconds))
    names = [f"rl{run}-{i:05d}" for i in range(total)]
    headers = [("authorization", f"Bearer {token}".encode())]
    sent: dict[str, int] = {}
    sent_order: list[str] = []
    result_at: dict[str, int] = {}
    event_at: dict[str, int] = {}
    created_at: dict[str, int] = {}
    rm_at: dict[str, int] = {}
    stop = threading.Event()
    cons = consumer_at_end(s, ["registry.events", "events.results"])
    poll_count = [0]

    def kafka_watch() -> None:  # when the result / the event becomes readable on Kafka
        while not stop.is_set():
            m = cons.poll(0.05)
            if m is None or m.error():
                continue
            now = time.perf_counter_ns()
            doc = json.loads(m.value() or b"{}")
            if m.topic() == "events.results":
                cid = doc.get("command_id", "")
                if cid.startswith(f"c-rl{run}-"):
                    result_at[cid[2:]] = now
            else:
                name = (doc.get("payload") or {}).get("name", "")
                if name.startswith(f"rl{run}-"):
                    event_at[name] = now
                    # occurred_at: when the handler built the event (wall clock, same machine),
                    # mapped onto the perf_counter clock of the other timestamps
                    with contextlib.suppress(KeyError, ValueError, TypeError):
                        occurred = datetime.fromisoformat(doc["occurred_at"]).timestamp()
                        created_at[name] = now - int((time.time() - occurred) * 1e9)

    def rm_watch() -> None:  # when the model becomes visible in the read model
        with psycopg.connect(s.dsn, autocommit=True) as conn:
            query = f"SELECT name FROM {s.read_schema}.rm_models WHERE name = ANY(%s)"
            while not stop.is_set() and len(rm_at) < total:
                pending = [n for n in sent_order[: len(sent_order)] if n not in rm_at]
                if pending:
                    rows = conn.execute(query, (pending,)).fetchall()
                    now = time.perf_counter_ns()
                    poll_count[0] += 1
                    for (name,) in rows:
                        rm_at[name] = now
                time.sleep(poll_ms / 1000)

    threads = [
        threading.Thread(target=kafka_watch, daemon=True),
        threading.Thread(target=rm_watch, daemon=True),
    ]
    for t in threads:
        t.start()
    time.sleep(0.5)  # let the consumer fetch its first (empty) batch
    p = producer(s, **{"linger.ms": 1})
    _sleep_until(start_at)
    t_first = time.perf_counter_ns()
    send_s = _paced_send(
        p,
        COMMANDS_TOPIC,
        names,
        lambda n: register_envelope(f"c-{n}", n),
        headers,
        rate,
        sent,
        sent_order,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(rm_at) < total:
        time.sleep(0.05)
    time.sleep(0.3)  # the last events / results on Kafka
    stop.set()
    for t in threads:
        t.join(5)
    cons.close()
    e2e = _summarise(names, sent, rm_at, t_first, warmup_s)
    to_result = _summarise(names, sent, result_at, t_first, warmup_s)
    to_event = _summarise(names, sent, event_at, t_first, warmup_s)

    def between(a: dict[str, int], b: dict[str, int]) -> list[float]:
        return [
            (b[n] - a[n]) / 1e9
            for n in names
            if n in a and n in b and (sent[n] - t_first) / 1e9 >= warmup_s
        ]

    event_to_rm = between(event_at, rm_at)
    return {
        "rate_target_per_s": rate,
        "rate_achieved_per_s": total / send_s,
        "sent": total,
        "seen_in_read_model": len(rm_at),
        "complete": len(rm_at) == total,
        "read_model_polls": poll_count[0],
        "poll_interval_ms": poll_ms,
        "command_to_read_model": stats_ms(e2e),
        "stages": {
            "command_to_result_on_kafka": stats_ms(to_result),
            "command_to_event_on_kafka": stats_ms(to_event),
            "command_to_event_created_by_handler": stats_ms(
                _summarise(names, sent, created_at, t_first, warmup_s)
            ),
            "event_created_to_event_on_kafka": stats_ms(between(created_at, event_at)),
            "event_on_kafka_to_read_model": stats_ms(event_to_rm),
        },
    }


def raw_kafka_latency(
    s: Settings,
    token: str,
    rate: float,
    seconds: float,
    warmup_s: float,
    start_at: float | None = None,
    *,
    transactional: bool = False,
) -> dict[str, Any]:
    """Raw produce -> read_committed consume of command-sized records on a scratch topic. With
    `transactional`, each record is produced and committed in its own Kafka transaction, as the
    relay and the handler do when commands arrive one at a time: the least the design's path pays
    per transactional hop."""
    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap_servers})
    if SCRATCH_TOPIC not in admin.list_topics(timeout=10).topics:
        for fut in admin.create_topics(
            [NewTopic(SCRATCH_TOPIC, num_partitions=s.topic_partitions, replication_factor=1)]
        ).values():
            with contextlib.suppress(KafkaException):  # already there
                fut.result(30)
        time.sleep(1.0)
    run = uuid.uuid4().hex[:6]
    total = max(1, int(rate * seconds))
    keys = [f"rk{run}-{i:05d}" for i in range(total)]
    headers = [("authorization", f"Bearer {token}".encode())]
    sent: dict[str, int] = {}
    got: dict[str, int] = {}
    stop = threading.Event()
    cons = consumer_at_end(s, [SCRATCH_TOPIC])

    def watch() -> None:
        while not stop.is_set() and len(got) < total:
            m = cons.poll(0.05)
            if m is None or m.error():
                continue
            now = time.perf_counter_ns()
            key = (m.key() or b"").decode()
            if key.startswith(f"rk{run}-"):
                m.value()
                got[key] = now

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    time.sleep(0.5)
    p = (
        transactional_producer(s, f"bench-read-txn-{run}", **{"linger.ms": 1})
        if transactional
        else producer(s, **{"linger.ms": 1})
    )
    _sleep_until(start_at)
    t_first = time.perf_counter_ns()
    send_s = _paced_send(
        p,
        SCRATCH_TOPIC,
        keys,
        lambda k: register_envelope(f"c-{k}", k),  # same size and headers as a command
        headers,
        rate,
        sent,
        [],
        transactional=transactional,
    )
    t.join(30)
    stop.set()
    t.join(5)
    cons.close()
    return {
        "rate_target_per_s": rate,
        "rate_achieved_per_s": total / send_s,
        "sent": total,
        "received": len(got),
        "complete": len(got) == total,
        "produce_to_consume": stats_ms(_summarise(keys, sent, got, t_first, warmup_s)),
    }


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


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def table(d: dict[str, Any]) -> str:
    rb, raw, api = d["rebuild"], d["raw_consume"], d["api"]
    lat = d["latency"]["command_to_read_model"]
    k = d["latency"]["raw_kafka"]["produce_to_consume"]
    t = d["latency"]["raw_kafka"]["transactional_hop"]["produce_to_consume"]
    ph = d["latency"]["raw_kafka"]["plain_hop"]["produce_to_consume"]
    c2r = lat["command_to_read_model"]
    rate = lat["rate_target_per_s"]
    st = lat["stages"]

    def pair(x: dict[str, float]) -> str:
        return f"{x['p50_ms']:.1f} / {x['p99_ms']:.1f}"

    rows: list[list[Any]] = [
        [
            f"replay (rebuild + chains + swap) records/s ({rb['rebuild_records']} records)",
            rb["rebuild_records_per_s"],
            "raw read_committed consumer records/s",
            raw["records_per_s"],
            d["rebuild_ratio"],
            f">= {TARGETS['rebuild']}",
            verdict(d["rebuild_ratio"] >= TARGETS["rebuild"]),
        ],
        [
            "replay --verify (+ both digests) records/s",
            rb["records_per_s"],
            "raw read_committed consumer records/s",
            raw["records_per_s"],
            d["verified_rebuild_ratio"],
            "info",
            "",
        ],
        [
            "rebuild floor records/s: COPY every record + insert the audit rows, nothing else",
            d["rebuild_floor"]["records_per_s"],
            "raw read_committed consumer records/s",
            raw["records_per_s"],
            d["rebuild_floor_ratio"],
            "info",
            "",
        ],
        [
            f"command -> read model p99 ms @ {rate:.0f}/s",
            c2r["p99_ms"],
            "raw Kafka produce -> consume p99 ms",
            k["p99_ms"],
            d["latency_ratio"],
            f"<= {TARGETS['latency']}",
            verdict(d["latency_ratio"] <= TARGETS["latency"]),
        ],
        [
            "  stage: command sent -> event built by the handler, p50 / p99 ms",
            pair(st["command_to_event_created_by_handler"]),
            "stage: event built -> readable on Kafka (store commit + relay), p50 / p99 ms",
            pair(st["event_created_to_event_on_kafka"]),
            "",
            "info",
            "",
        ],
        [
            "  stage: event readable on Kafka -> in the read model (projector), p50 / p99 ms",
            pair(st["event_on_kafka_to_read_model"]),
            "(for comparison) command sent -> result readable on Kafka, p50 / p99 ms",
            pair(st["command_to_result_on_kafka"]),
            "",
            "info",
            "",
        ],
        [
            f"one transactional hop (produce + commit -> read_committed) p99 ms @ {rate:.0f}/s",
            t["p99_ms"],
            "plain hop p99 ms, measured just before it",
            ph["p99_ms"],
            t["p99_ms"] / ph["p99_ms"],
            "info",
            "",
        ],
        [
            f"command -> read model p50 ms @ {rate:.0f}/s",
            c2r["p50_ms"],
            "raw Kafka produce -> consume p50 ms",
            k["p50_ms"],
            d["latency_ratio_p50"],
            "info",
            "",
        ],
    ]
    for i, (client, ratio) in enumerate(d["api_ratio"].items()):
        a = api[client]
        rows[3 + 3 * i : 3 + 3 * i] = [
            [
                f"GET /models/{{name}} req/s ({client} client, c={api['concurrency']})",
                a["model"]["req_per_s"],
                "GET /health req/s (same server, same client)",
                a["health"]["req_per_s"],
                ratio,
                f">= {TARGETS['api']}",
                verdict(ratio >= TARGETS["api"]),
            ],
            [
                f"CPU ms/request: API, Postgres, client ({client}) for /models/{{name}}",
                f"{a['model']['api_cpu_ms_per_request']:.2f}, "
                f"{a['model']['postgres_cpu_ms_per_request']:.2f}, "
                f"{a['model']['client_cpu_ms_per_request']:.2f}",
                "same for /health",
                f"{a['health']['api_cpu_ms_per_request']:.2f}, "
                f"{a['health']['postgres_cpu_ms_per_request']:.2f}, "
                f"{a['health']['client_cpu_ms_per_request']:.2f}",
                "",
                "info",
                "",
            ],
            [
                f"GET /models/{{name}} p50 / p99 ms ({client})",
                f"{a['model']['p50_ms']:.1f} / {a['model']['p99_ms']:.1f}",
                "GET /health p50 / p99 ms",
                f"{a['health']['p50_ms']:.1f} / {a['health']['p99_ms']:.1f}",
                a["model"]["p99_ms"] / a["health"]["p99_ms"],
                "info",
                "",
            ],
        ]
    return markdown_table(
        ["measure", "value", "baseline (same run)", "baseline value", "ratio", "target", ""], rows
    )


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

"""The write-path benchmark's measurements (bench/write_path.py): the raw INSERT+COMMIT baseline,
the throughput run, and command / raw Kafka latency at a steady rate."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stack import (
    command_envelope,
    consumer_at_end,
    kafka_conf,
    percentile,
    produce,
    producer,
)
from confluent_kafka.admin import AdminClient, NewTopic

from config.settings import Settings

COMMANDS_TOPIC = "registry.commands"
EVENTS_TOPIC = "registry.events"
RESULTS_TOPIC = "events.results"
SCRATCH_TOPIC = "bench.kafka-latency"
WARMUP_S = 1.0  # latency samples sent in the first second are left out of p50/p99

TEXT = "Benchmark model registered by bench/write_path.py; the text only gives the event a size. "


# ---------------------------------------------------------------------------------------- helpers


def envelope(command_id: str, name: str) -> bytes:
    payload = {
        "name": name,
        "description": TEXT,
        "intended_use": "throughput and latency measurement",
        "limitations": "none: synthetic",
    }
    return command_envelope(command_id, "RegisterModel", 2, payload)


# ----------------------------------------------------------------------------- baseline A (pg)


def raw_insert_baseline(s: Settings, seconds: float) -> dict[str, Any]:
    import psycopg

    table = f"bench_raw_{uuid.uuid4().hex[:8]}"
    blob = os.urandom(600)
    with psycopg.connect(s.dsn) as conn:
        conn.execute(
            f"CREATE TABLE {table} "
            "(id uuid PRIMARY KEY, n int NOT NULL, t text NOT NULL, b bytea NOT NULL)"
        )
        conn.commit()
        sql = f"INSERT INTO {table} (id, n, t, b) VALUES (%s, %s, %s, %s)"
        rows, t0 = 0, time.perf_counter()
        deadline = t0 + seconds
        while time.perf_counter() < deadline:
            conn.execute(sql, (uuid.uuid4(), rows, f"bench-raw-{rows}", blob), prepare=True)
            conn.commit()
            rows += 1
        elapsed = time.perf_counter() - t0
        conn.execute(f"DROP TABLE {table}")
        conn.commit()
    return {"rows": rows, "seconds": elapsed, "rows_per_s": rows / elapsed}


# ---------------------------------------------------------------------------------- throughput


def throughput(s: Settings, n: int, token: str, timeout_s: float) -> dict[str, Any]:
    prefix = f"wp{uuid.uuid4().hex[:8]}-"
    cons = consumer_at_end(s, [EVENTS_TOPIC, RESULTS_TOPIC])
    arrivals: list[float] = []  # perf_counter when each of our ModelRegistered events was read
    create_ts: list[int] = []  # Kafka CreateTime (ms) of those events (set by the relay)
    statuses: dict[str, int] = {}
    result_arrivals: list[float] = []
    done = threading.Event()

    def consume() -> None:
        # until every event is on registry.events and every result on events.results (the
        # clock below stops at the last event; results are only counted)
        while not done.is_set() and (len(arrivals) < n or len(result_arrivals) < n):
            m = cons.poll(0.05)
            if m is None or m.error():
                continue
            now = time.perf_counter()
            doc = json.loads(m.value())
            if m.topic() == EVENTS_TOPIC:
                if doc.get("type") == "ModelRegistered" and str(
                    doc["payload"].get("name", "")
                ).startswith(prefix):
                    arrivals.append(now)
                    create_ts.append(m.timestamp()[1])
            elif str(doc.get("command_id", "")).startswith(prefix):
                statuses[doc["status"]] = statuses.get(doc["status"], 0) + 1
                result_arrivals.append(now)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    headers = [("authorization", f"Bearer {token}".encode())]
    p = producer(s, **{"linger.ms": 5})
    msgs = [
        (f"{prefix}{i:07d}", envelope(f"{prefix}c{i:07d}", f"{prefix}{i:07d}")) for i in range(n)
    ]
    t0 = time.perf_counter()
    t0_wall_ms = time.time() * 1000
    for name, value in msgs:
        produce(p, COMMANDS_TOPIC, name, value, headers)
    p.flush(60)
    produced_s = time.perf_counter() - t0
    reader.join(timeout_s)
    done.set()
    complete = len(arrivals) == n and statuses.get("accepted", 0) == n
    reader.join(5)
    cons.close()
    got = len(arrivals)
    elapsed = (arrivals[-1] - t0) if got else float("nan")
    out: dict[str, Any] = {
        "n": n,
        "events_seen": got,
        "complete": complete,
        "result_statuses": statuses,
        "produce_seconds": produced_s,
        "seconds_to_last_event": elapsed,
        "commands_per_s": got / elapsed if got else 0.0,
        "command_bytes": len(msgs[0][1]),
    }
    if got >= 10:
        lo, hi = arrivals[got // 10], arrivals[(got * 9) // 10]
        out["steady_commands_per_s_p10_p90"] = (
            ((got * 9) // 10 - got // 10) / (hi - lo) if hi > lo else float("nan")
        )
        out["first_event_after_s"] = arrivals[0] - t0
        out["last_event_relay_create_after_s"] = (max(create_ts) - t0_wall_ms) / 1000
    if result_arrivals:
        out["seconds_to_last_result"] = max(result_arrivals) - t0
    return out


# ------------------------------------------------------------------------------------- latency


def paced_latency(
    s: Settings,
    *,
    rate: float,
    seconds: float,
    out_topic: str,
    in_topic: str,
    build: Callable[[str], tuple[str, bytes, list[Any] | None]],
    id_of: Callable[[bytes], str | None],
) -> dict[str, Any]:
    """Send at `rate`/s for `seconds`; message ids carry the send time (ns, wall clock) as their
    last '-' field; latency = wall-clock receive time of the matching record on in_topic minus
    the send time."""
    run = uuid.uuid4().hex[:8]
    cons = consumer_at_end(s, [in_topic])
    total = max(1, int(rate * seconds))
    latencies_ms: list[tuple[float, float]] = []  # (sent offset in s, latency ms)
    stop = threading.Event()
    t_start_ns = time.time_ns()

    def consume() -> None:
        while not stop.is_set() and len(latencies_ms) < total:
            m = cons.poll(0.05)
            if m is None or m.error():
                continue
            now_ns = time.time_ns()
            mid = id_of(m.value())
            if mid is None or not mid.startswith(f"lat{run}-"):
                continue
            sent_ns = int(mid.rsplit("-", 1)[1])
            latencies_ms.append(((sent_ns - t_start_ns) / 1e9, (now_ns - sent_ns) / 1e6))

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    time.sleep(0.5)  # let the consumer fetch its first (empty) batch
    p = producer(s, **{"linger.ms": 1})
    t0 = time.perf_counter()
    for i in range(total):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        mid = f"lat{run}-{i:07d}-{time.time_ns()}"
        key, value, headers = build(mid)
        produce(p, out_topic, key, value, headers)
    p.flush(30)
    send_s = time.perf_counter() - t0
    reader.join(60)
    stop.set()
    reader.join(5)
    cons.close()
    kept = [lat for sent_at, lat in latencies_ms if sent_at >= WARMUP_S]
    mid_s = WARMUP_S + (seconds - WARMUP_S) / 2
    first = [lat for sent_at, lat in latencies_ms if WARMUP_S <= sent_at < mid_s]
    second = [lat for sent_at, lat in latencies_ms if sent_at >= mid_s]
    return {
        "rate_target_per_s": rate,
        "rate_achieved_per_s": total / send_s,
        "sent": total,
        "received": len(latencies_ms),
        "samples_after_warmup": len(kept),
        "p50_ms": percentile(kept, 50),
        "p90_ms": percentile(kept, 90),
        "p99_ms": percentile(kept, 99),
        "max_ms": max(kept) if kept else float("nan"),
        "p50_ms_first_half": percentile(first, 50),
        "p50_ms_second_half": percentile(second, 50),
    }


def command_latency(s: Settings, token: str, rate: float, seconds: float) -> dict[str, Any]:
    headers = [("authorization", f"Bearer {token}".encode())]

    def build(mid: str) -> tuple[str, bytes, list[Any] | None]:
        name = mid.replace("lat", "latm", 1)[:100]
        return name, envelope(mid, name), headers

    def id_of(raw: bytes) -> str | None:
        return json.loads(raw).get("command_id")

    return paced_latency(
        s,
        rate=rate,
        seconds=seconds,
        out_topic=COMMANDS_TOPIC,
        in_topic=RESULTS_TOPIC,
        build=build,
        id_of=id_of,
    )


def kafka_latency(s: Settings, token: str, rate: float, seconds: float) -> dict[str, Any]:
    admin = AdminClient({**kafka_conf(s)})
    if SCRATCH_TOPIC not in admin.list_topics(timeout=10).topics:
        for fut in admin.create_topics(
            [NewTopic(SCRATCH_TOPIC, num_partitions=s.topic_partitions, replication_factor=1)]
        ).values():
            fut.result(30)
        time.sleep(1.0)
    headers = [("authorization", f"Bearer {token}".encode())]

    def build(mid: str) -> tuple[str, bytes, list[Any] | None]:
        return mid, envelope(mid, mid[:100]), headers  # same size and headers as a command

    def id_of(raw: bytes) -> str | None:
        return json.loads(raw).get("command_id")

    return paced_latency(
        s,
        rate=rate,
        seconds=seconds,
        out_topic=SCRATCH_TOPIC,
        in_topic=SCRATCH_TOPIC,
        build=build,
        id_of=id_of,
    )


# ------------------------------------------------------------------------- signing, in process


def signing_cost(s: Settings, n: int = 20000) -> dict[str, Any]:
    """CPU per event of what signing adds to the handler: the Ed25519 signature of the hash and
    the two members spliced into the canonical bytes (EventSigner.sign_all, as the event store
    bootstrap builds calls it), on RegisterModel-sized envelopes sealed as the domain seals them."""
    from datetime import UTC, datetime

    from events.envelope import ENVELOPE_VERSION, GENESIS_HASH, seal
    from infra import keys
    from infra.event_keys import EventSigner

    keys.ensure_dev_key(s)
    envs = [
        seal(
            {
                "event_id": uuid.uuid4(),
                "type": "ModelRegistered",
                "schema_version": 2,
                "aggregate_type": "Model",
                "aggregate_id": uuid.uuid4(),
                "version": 1,
                "occurred_at": datetime.now(UTC),
                "actor": "bench",
                "correlation_id": str(uuid.uuid4()),
                "causation_id": str(uuid.uuid4()),
                "payload": {"name": f"m-{i}", "description": TEXT, "owner": "bench"},
                "prev_hash": GENESIS_HASH,
                "envelope_version": ENVELOPE_VERSION,
            }
        )
        for i in range(n)
    ]
    signer = EventSigner(s)
    t0 = time.process_time()
    for i in range(0, n, 500):  # the handler's batches
        signer.sign_all(envs[i : i + 500])
    cpu = time.process_time() - t0
    return {"events": n, "cpu_seconds": cpu, "cpu_us_per_event": 1e6 * cpu / n}

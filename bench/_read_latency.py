"""Read-side measurement 3: command -> read-model latency, and the raw / transactional Kafka hops."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from _read_common import COMMANDS_TOPIC, SCRATCH_TOPIC, register_envelope, stats_ms
from _stack import (
    consumer_at_end,
    kafka_conf,
    produce,
    producer,
)
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from config.settings import Settings
from infra.kafka import transactional_producer

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
    admin = AdminClient({**kafka_conf(s)})
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
        transactional_producer(s, f"bench-read-txn-{run}", "admin", **{"linger.ms": 1})
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

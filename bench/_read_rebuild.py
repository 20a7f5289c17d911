"""Read-side measurement 1: rebuild (replay) throughput against a raw consume, and the rebuild floor."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from _stack import kafka_conf
from confluent_kafka import Consumer, Message, TopicPartition

from config.settings import Settings
from projections.digest import digest
from projections.replay import TOPICS, replay, verify_chains
from veritas.bootstrap import bootstrap


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
                **kafka_conf(s),
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

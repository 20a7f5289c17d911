"""Audit: verify hash chains in the event store, in any copy of an events topic, or in the read
model's audit log, and assemble a model's verified timeline."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from psycopg import Connection, sql

from events.catalog import EVENT_TOPICS
from events.envelope import ChainBreak, EventEnvelope, verify_chain
from veritas.bootstrap import Container
from veritas.eventstore import EVENTS_TABLE
from veritas.kafka import where

COPY_PREFIX = "audit.copy."  # copies of event topics made for an audit (verify --topic)


def auditable_topic(name: str) -> bool:
    return name in EVENT_TOPICS.values() or (
        name.startswith(COPY_PREFIX) and len(name) > len(COPY_PREFIX)
    )


@dataclass(frozen=True)
class Verification:
    source: str
    aggregates: int
    events: int
    chain_break: ChainBreak | None
    undecodable: int = 0  # records on a topic that are not event envelopes at all

    @property
    def valid(self) -> bool:
        return self.chain_break is None and self.undecodable == 0


def _verify_sorted(source: str, envelopes: Iterable[EventEnvelope]) -> Verification:
    """Envelopes grouped by aggregate, each group in stored order."""
    aggregates = events = 0
    current: uuid.UUID | None = None
    stream: list[EventEnvelope] = []
    for env in envelopes:
        events += 1
        if env.aggregate_id != current:
            if stream and (brk := verify_chain(stream)):
                return Verification(source, aggregates, events, brk)
            aggregates, current, stream = aggregates + 1, env.aggregate_id, []
        stream.append(env)
    brk = verify_chain(stream) if stream else None
    return Verification(source, aggregates, events, brk)


def _store_rows(conn: Connection, schema: str) -> Iterator[EventEnvelope]:
    query = sql.SQL("SELECT state FROM {}.{} ORDER BY originator_id, originator_version").format(
        sql.Identifier(schema), sql.Identifier(EVENTS_TABLE)
    )
    with conn.transaction(), conn.cursor(name=f"audit_{uuid.uuid4().hex}") as cur:
        cur.execute(query)
        for (state,) in cur:
            yield EventEnvelope.from_bytes(bytes(state))


def verify_store(c: Container) -> Verification:
    with c.read_model_connection() as conn:
        return _verify_sorted("store", _store_rows(conn, c.settings.db_schema))


def read_topics(
    c: Container, topics: list[str], bad: list[str] | None = None
) -> dict[uuid.UUID, list[EventEnvelope]]:
    """Every envelope on `topics`, grouped by aggregate in partition (= per-aggregate) order."""
    consumer = Consumer(
        c.kafka_config(
            **{
                "group.id": f"veritas-audit-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
    )
    streams: dict[uuid.UUID, list[EventEnvelope]] = defaultdict(list)
    try:
        ends = {}
        for t in topics:
            for p in consumer.list_topics(t, timeout=10).topics[t].partitions:
                tp = TopicPartition(t, p)
                ends[(t, p)] = consumer.get_watermark_offsets(tp, timeout=10)[1]
        todo = {k for k, v in ends.items() if v > 0}
        consumer.assign([TopicPartition(t, p, 0) for (t, p) in todo])
        while todo:
            for m in consumer.consume(1000, 0.5):
                if m.error():
                    continue
                try:
                    env = EventEnvelope.from_bytes(m.value() or b"")
                except ValueError:
                    if bad is not None:
                        bad.append("/".join(str(x) for x in where(m)))
                    continue
                streams[env.aggregate_id].append(env)
            for tp in consumer.position([TopicPartition(t, p) for (t, p) in list(todo)]):
                if tp.offset >= ends[(tp.topic, tp.partition)]:
                    todo.discard((tp.topic, tp.partition))
    finally:
        consumer.close()
    return streams


def verify_topics(c: Container, topics: list[str]) -> Verification:
    bad: list[str] = []
    streams = read_topics(c, topics, bad)
    flat = (e for agg in sorted(streams, key=str) for e in streams[agg])
    v = _verify_sorted("topics:" + ",".join(topics), flat)
    return Verification(v.source, v.aggregates, v.events, v.chain_break, undecodable=len(bad))


def verify_read_model(c: Container) -> Verification:
    with (
        c.read_model_connection() as conn,
        conn.transaction(),
        conn.cursor(name=f"audit_{uuid.uuid4().hex}") as cur,
    ):
        cur.execute("SELECT envelope FROM rm_audit_log ORDER BY aggregate_id, version")
        return _verify_sorted("read_model", (EventEnvelope.model_validate(r[0]) for r in cur))


def model_timeline(conn: Connection, model_name: str) -> list[dict[str, Any]]:
    """Every event of the model, its versions and its submissions, oldest first."""
    rows = conn.execute(
        "SELECT envelope FROM rm_audit_log WHERE aggregate_id IN ("
        "  SELECT aggregate_id FROM rm_models WHERE name = %(n)s"
        "  UNION SELECT aggregate_id FROM rm_model_versions WHERE model_name = %(n)s"
        "  UNION SELECT submission_id FROM rm_submissions WHERE model_name = %(n)s)"
        " ORDER BY store_seq, occurred_at, aggregate_id, version",
        {"n": model_name},
    ).fetchall()
    return [r[0] for r in rows]


def verify_timeline(timeline: list[dict[str, Any]]) -> ChainBreak | None:
    by_agg: dict[str, list[EventEnvelope]] = defaultdict(list)
    for e in timeline:
        by_agg[e["aggregate_id"]].append(EventEnvelope.model_validate(e))
    for stream in by_agg.values():
        if brk := verify_chain(sorted(stream, key=lambda e: e.version)):
            return brk
    return None

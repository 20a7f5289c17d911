"""Audit: verify hash chains in the event store, in any copy of an events topic, or in the read
model's audit log, and assemble a model's verified timeline.

Every check applies DESIGN's rule to the JSON as it was published (events.envelope
.read_published / verify_published), as an outside auditor would: never to a re-serialised model.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from psycopg import Connection, sql

from events.catalog import EVENT_TOPICS
from events.envelope import ChainBreak, Undecodable, as_published, read_published, verify_published
from infra.context import Infra as Container
from infra.kafka import where
from infra.postgres.eventstore import EVENTS_TABLE

COPY_PREFIX = "audit.copy."  # copies of event topics made for an audit (verify --topic)


def auditable_topic(name: str) -> bool:
    return name in EVENT_TOPICS.values() or (
        name.startswith(COPY_PREFIX) and len(name) > len(COPY_PREFIX)
    )


Doc = dict[str, Any]
MAX_PROBLEMS = 100  # undecodable records named one by one; the count covers them all


@dataclass(frozen=True)
class Verification:
    source: str
    aggregates: int
    events: int
    chain_break: ChainBreak | None
    undecodable: int = 0  # records on a topic that are not event envelopes at all
    problems: tuple[str, ...] = ()  # "topic/partition/offset: why", for the first of those

    @property
    def valid(self) -> bool:
        return self.chain_break is None and self.undecodable == 0


def _verify_streams(source: str, streams: Iterable[list[Doc]]) -> Verification:
    """Each stream: one aggregate's events in stored order."""
    aggregates = events = 0
    for stream in streams:
        aggregates, events = aggregates + 1, events + len(stream)
        if brk := verify_published(stream):
            return Verification(source, aggregates, events, brk)
    return Verification(source, aggregates, events, None)


def _grouped(docs: Iterable[Doc]) -> Iterator[list[Doc]]:
    """Consecutive events of one aggregate, for input sorted by aggregate."""
    stream: list[Doc] = []
    for doc in docs:
        if stream and doc["aggregate_id"] != stream[0]["aggregate_id"]:
            yield stream
            stream = []
        stream.append(doc)
    if stream:
        yield stream


class _Unreadable(Exception):
    """A stored event that cannot be read: the chain breaks there."""

    def __init__(self, brk: ChainBreak) -> None:
        super().__init__(brk.reason)
        self.brk = brk


def _rows(conn: Connection, query: sql.Composed) -> Iterator[tuple[Any, ...]]:
    with conn.transaction(), conn.cursor(name=f"audit_{uuid.uuid4().hex}") as cur:
        cur.execute(query)
        yield from cur


def _store_docs(conn: Connection, schema: str) -> Iterator[Doc]:
    query = sql.SQL(
        "SELECT originator_id, originator_version, state FROM {}.{}"
        " ORDER BY originator_id, originator_version"
    ).format(sql.Identifier(schema), sql.Identifier(EVENTS_TABLE))
    for agg, version, state in _rows(conn, query):
        try:
            yield read_published(bytes(state))
        except Undecodable as exc:
            raise _Unreadable(ChainBreak("?", str(agg), version, f"undecodable: {exc}")) from None


def verify_store(c: Container) -> Verification:
    with c.read_model_connection() as conn:
        try:
            return _verify_streams("store", _grouped(_store_docs(conn, c.settings.db_schema)))
        except _Unreadable as exc:
            return Verification("store", 0, 0, exc.brk)


def read_topics(
    c: Container, topics: list[str], bad: list[str] | None = None
) -> dict[str, list[Doc]]:
    """Every published envelope on `topics` (parsed as DESIGN reads it), grouped by aggregate id in
    partition (= per-aggregate) order. Records that are not envelopes go to `bad`, each as
    "topic/partition/offset: why"."""
    consumer = Consumer(
        c.kafka_config(
            **{
                "group.id": f"veritas-audit-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
    )
    streams: dict[str, list[Doc]] = defaultdict(list)
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
                    doc = read_published(m.value() or b"")
                except Undecodable as exc:
                    if bad is not None:
                        bad.append(f"{'/'.join(str(x) for x in where(m))}: {exc}")
                    continue
                streams[doc["aggregate_id"]].append(doc)
            for tp in consumer.position([TopicPartition(t, p) for (t, p) in list(todo)]):
                if tp.offset >= ends[(tp.topic, tp.partition)]:
                    todo.discard((tp.topic, tp.partition))
    finally:
        consumer.close()
    return streams


def verify_topics(c: Container, topics: list[str]) -> Verification:
    bad: list[str] = []
    streams = read_topics(c, topics, bad)
    v = _verify_streams("topics:" + ",".join(topics), (streams[a] for a in sorted(streams)))
    return Verification(
        v.source,
        v.aggregates,
        v.events,
        v.chain_break,
        undecodable=len(bad),
        problems=tuple(bad[:MAX_PROBLEMS]),
    )


def audit_log_docs(conn: Connection, schema: str | None = None) -> Iterator[Doc]:
    """The read model's audit copy, each envelope read from its stored JSON text, by aggregate
    and version. (`envelope` is a json column: its text is the record's published bytes.)"""
    table = (
        sql.SQL("{}.rm_audit_log").format(sql.Identifier(schema))
        if schema
        else sql.SQL("rm_audit_log")
    )
    query = sql.SQL(
        "SELECT aggregate_id, version, envelope::text FROM {} ORDER BY aggregate_id, version"
    ).format(table)
    for agg, version, text in _rows(conn, query):
        try:
            yield read_published(text)
        except Undecodable as exc:
            raise _Unreadable(ChainBreak("?", str(agg), version, f"undecodable: {exc}")) from None


def verify_audit_log(conn: Connection, schema: str | None = None) -> Verification:
    try:
        return _verify_streams("read_model", _grouped(audit_log_docs(conn, schema)))
    except _Unreadable as exc:
        return Verification("read_model", 0, 0, exc.brk)


def verify_read_model(c: Container) -> Verification:
    with c.read_model_connection() as conn:
        return verify_audit_log(conn)


def model_timeline(conn: Connection, model_name: str) -> list[dict[str, Any]]:
    """Every event of the model, its versions, its submissions and its training runs, oldest first."""
    rows = conn.execute(
        "SELECT envelope FROM rm_audit_log WHERE aggregate_id IN ("
        "  SELECT aggregate_id FROM rm_models WHERE name = %(n)s"
        "  UNION SELECT aggregate_id FROM rm_model_versions WHERE model_name = %(n)s"
        "  UNION SELECT submission_id FROM rm_submissions WHERE model_name = %(n)s"
        "  UNION SELECT run_id FROM rm_training_runs WHERE model_name = %(n)s)"
        " ORDER BY store_seq, occurred_at, aggregate_id, version",
        {"n": model_name},
    ).fetchall()
    return [r[0] for r in rows]


def verify_timeline(timeline: list[dict[str, Any]]) -> ChainBreak | None:
    """The timeline's envelopes were parsed from their JSON text by the json module, as
    DESIGN's rule reads them."""
    by_agg: dict[str, list[Doc]] = defaultdict(list)
    for e in timeline:
        try:
            doc = as_published(e)
        except Undecodable as exc:
            return ChainBreak(
                "?", str(e.get("aggregate_id") if isinstance(e, dict) else "?"), 0, str(exc)
            )
        by_agg[doc["aggregate_id"]].append(doc)
    for stream in by_agg.values():
        if brk := verify_published(sorted(stream, key=lambda d: int(d["version"]))):
            return brk
    return None

"""Audit: verify the events of the event store, of any copy of an events topic, or of the read
model's audit log (hashes, chains and signatures: projections.log_check), and a model's timeline.
projections.log_audit compares the store with the topics.

Every check applies DESIGN's rule to the JSON as it was published (events.envelope
.read_published), as an outside auditor would: never to a re-serialised model.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition
from psycopg import Connection, sql

from events.catalog import EVENT_TOPICS
from events.envelope import ChainBreak, Undecodable, read_published
from events.signatures import KeySource, Legacy, NoLegacy
from infra.context import Infra as Container
from infra.kafka import where
from infra.postgres.eventstore import EVENTS_TABLE
from projections.log_check import Placed, Problem, SourceCheck, check_source

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
    chain_break: ChainBreak | None  # the first refused event, in aggregate order
    undecodable: int = 0  # records on a topic that are not event envelopes at all
    problems: tuple[str, ...] = ()  # "topic/partition/offset: why", for the first of those
    refused: tuple[Problem, ...] = ()  # each refused event with its reason code (bounded)
    refused_count: int = 0

    @property
    def valid(self) -> bool:
        return self.chain_break is None and self.undecodable == 0 and self.refused_count == 0


def as_verification(check: SourceCheck, bad: list[str] | None = None) -> Verification:
    bad = bad or []
    return Verification(
        check.source,
        check.aggregates,
        check.events,
        check.chain_break,
        undecodable=len(bad),
        problems=tuple(bad[:MAX_PROBLEMS]),
        refused=tuple(check.refused.items),
        refused_count=check.refused.count,
    )


def _rows(conn: Connection, query: sql.Composed, params: tuple[Any, ...] = ()) -> Iterator[Any]:
    with conn.transaction(), conn.cursor(name=f"audit_{uuid.uuid4().hex}") as cur:
        cur.execute(query, params)
        yield from cur


def _placed(raw: bytes | str, place: str, nid: int | None, agg: Any, version: int) -> Placed:
    try:
        return Placed.of(read_published(raw), place, nid)
    except Undecodable:
        return Placed(None, place, nid, "?", str(agg), int(version))


def _only(
    column: str, aggregates: Collection[str] | None
) -> tuple[sql.Composable, tuple[Any, ...]]:
    if aggregates is None:
        return sql.SQL(""), ()
    return sql.SQL(" WHERE {}::text = ANY(%s)").format(sql.Identifier(column)), (list(aggregates),)


def store_events(
    conn: Connection, schema: str, aggregates: Collection[str] | None = None
) -> Iterator[Placed]:
    """The store's events, by aggregate and version; place "store#<notification id>"."""
    where_, params = _only("originator_id", aggregates)
    query = sql.SQL(
        "SELECT notification_id, originator_id, originator_version, state FROM {}.{}{}"
        " ORDER BY originator_id, originator_version"
    ).format(sql.Identifier(schema), sql.Identifier(EVENTS_TABLE), where_)
    for nid, agg, version, state in _rows(conn, query, params):
        yield _placed(bytes(state), f"store#{nid}", int(nid), agg, version)


def verify_store(c: Container) -> Verification:
    with c.read_model_connection() as conn:
        events = store_events(conn, c.settings.db_schema)
        return as_verification(check_source("store", events, c.event_keys, c.legacy)[0])


def _notification_id(headers: Any) -> int | None:
    for key, value in headers:
        if key == "notification_id" and isinstance(value, bytes) and value.isdigit():
            return int(value)
    return None


def _records(c: Container, topics: list[str]) -> Iterator[Message]:
    """Every committed record on `topics`, up to their ends when the read began."""
    consumer = Consumer(
        c.kafka_config(
            **{
                "group.id": f"veritas-audit-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
    )
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
                if not m.error():
                    yield m
            for tp in consumer.position([TopicPartition(t, p) for (t, p) in list(todo)]):
                if tp.offset >= ends[(tp.topic, tp.partition)]:
                    todo.discard((tp.topic, tp.partition))
    finally:
        consumer.close()


def topic_events(
    c: Container, topics: list[str], bad: list[str], aggregates: Collection[str] | None = None
) -> Iterator[Placed]:
    """Every envelope on `topics` in partition (= per-aggregate) order, placed at
    "topic/partition/offset" with the relay's notification id header. Records that are not
    envelopes go to `bad`, each as "topic/partition/offset: why"."""
    for m in _records(c, topics):
        place = "/".join(str(x) for x in where(m))
        try:
            doc = read_published(m.value() or b"")
        except Undecodable as exc:
            bad.append(f"{place}: {exc}")
            continue
        if aggregates is None or doc["aggregate_id"] in aggregates:
            yield Placed.of(doc, place, _notification_id(m.headers() or []))


def read_topics(
    c: Container, topics: list[str], bad: list[str] | None = None
) -> dict[str, list[Doc]]:
    """Every published envelope on `topics`, grouped by aggregate id in partition order."""
    streams: dict[str, list[Doc]] = defaultdict(list)
    for e in topic_events(c, topics, [] if bad is None else bad):
        streams[e.aggregate_id].append(dict(e.doc or {}))
    return streams


def verify_topics(c: Container, topics: list[str]) -> Verification:
    bad: list[str] = []
    check = check_source(
        "topics:" + ",".join(topics), topic_events(c, topics, bad), c.event_keys, c.legacy
    )[0]
    return as_verification(check, bad)


def read_model_events(
    conn: Connection, schema: str | None = None, aggregates: Collection[str] | None = None
) -> Iterator[Placed]:
    """The read model's audit copy, each envelope read from its stored JSON text (`envelope` is
    a json column: its text is the record's published bytes), placed at
    "read_model:topic/partition/offset" (the record it was projected from)."""
    table = (
        sql.SQL("{}.rm_audit_log").format(sql.Identifier(schema))
        if schema
        else sql.SQL("rm_audit_log")
    )
    where_, params = _only("aggregate_id", aggregates)
    query = sql.SQL(
        "SELECT aggregate_id, version, envelope::text, topic, kafka_partition, kafka_offset"
        " FROM {}{} ORDER BY aggregate_id, version"
    ).format(table, where_)
    for agg, version, text, topic, partition, offset in _rows(conn, query, params):
        yield _placed(text, f"read_model:{topic}/{partition}/{offset}", None, agg, version)


def verify_audit_log(
    conn: Connection,
    schema: str | None = None,
    keys: KeySource | None = None,
    legacy: Legacy | None = None,
) -> Verification:
    """Hashes and chains of the read model's copy; signatures too where `keys` are given."""
    events = read_model_events(conn, schema)
    return as_verification(check_source("read_model", events, keys, legacy or NoLegacy())[0])


def verify_read_model(c: Container) -> Verification:
    with c.read_model_connection() as conn:
        return verify_audit_log(conn, None, c.event_keys, c.legacy)


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

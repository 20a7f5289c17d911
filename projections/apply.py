"""Apply one Kafka record to the read models, inside the caller's transaction."""

from __future__ import annotations

import psycopg
from confluent_kafka import Message
from prometheus_client import Counter
from psycopg import Connection, Cursor
from pydantic import ValidationError

from events.envelope import EventEnvelope
from events.results import CommandResult
from infra.kafka import headers, where
from projections import governance, monitoring, registry, serving, training
from projections.believe import (
    Refused,
    Seen,
    Trust,
    Verifier,
    check_copy,
    load_heads,
    quarantine,
)
from projections.ops import Event, Projection, Row, execute, sql_value

PROJECTIONS: dict[str, Projection] = {
    **registry.PROJECTIONS,
    **governance.PROJECTIONS,
    **training.PROJECTIONS,
    **monitoring.PROJECTIONS,
    **serving.PROJECTIONS,
}
EVENT_TOPICS = (
    "registry.events",
    "governance.events",
    "training.events",
    "serving.events",
    "monitoring.events",
)
RESULTS_TOPIC = "events.results"


def command_status_row(value: bytes) -> Row:
    r = CommandResult.model_validate_json(value)
    return {
        "command_id": r.command_id,
        "status": r.status,
        "reason_code": r.reason_code,
        "sub_code": r.sub_code,
        "message": r.message,
        "events": [e.model_dump(mode="json") for e in r.events],
    }


STATUS_COLS = ("command_id", "status", "reason_code", "sub_code", "message", "events")
_STATUS_INSERT = (
    f"INSERT INTO rm_command_status ({', '.join(STATUS_COLS)})"
    f" VALUES ({', '.join(['%s'] * len(STATUS_COLS))}) ON CONFLICT (command_id) DO NOTHING"
)


def _command_status(cur: Cursor, value: bytes) -> None:
    row = command_status_row(value)
    cur.execute(_STATUS_INSERT, [sql_value(row[c]) for c in STATUS_COLS])


def store_seq(record_headers: list[tuple[str, bytes]]) -> int | None:
    for key, value in record_headers:
        if key == "notification_id" and value:
            return int(value)
    return None


_AUDIT_INSERT = (
    "INSERT INTO rm_audit_log (aggregate_id, version, aggregate_type, event_id, type, actor,"
    " occurred_at, correlation_id, causation_id, envelope, topic, kafka_partition, kafka_offset,"
    " store_seq) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s::json,%s,%s,%s,%s)"
)


# A version delivered twice (a copy on another topic or partition) is applied once, and its audit
# row keeps the lowest (topic, partition, offset) among its copies, so that the read model does not
# depend on which copy a consumer happened to read first. RETURNING says whether it was new.
_AUDIT_CAREFUL = (
    " ON CONFLICT (aggregate_id, version) DO UPDATE SET topic = excluded.topic,"
    " kafka_partition = excluded.kafka_partition, kafka_offset = excluded.kafka_offset,"
    ' store_seq = excluded.store_seq WHERE (excluded.topic COLLATE "C",'
    ' excluded.kafka_partition, excluded.kafka_offset) < (rm_audit_log.topic COLLATE "C",'
    " rm_audit_log.kafka_partition, rm_audit_log.kafka_offset) RETURNING xmax = 0"
)
# The same rule for a copy met after its row was written in bulk.
AUDIT_RELOCATE = (
    "UPDATE rm_audit_log SET topic = %(t)s, kafka_partition = %(p)s, kafka_offset = %(o)s,"
    " store_seq = %(s)s WHERE aggregate_id = %(a)s AND version = %(v)s"
    ' AND (%(t)s COLLATE "C", %(p)s, %(o)s) < (topic COLLATE "C", kafka_partition, kafka_offset)'
)


def _event(
    cur: Cursor,
    topic: str,
    partition: int,
    offset: int,
    value: bytes,
    seq: int | None,
    verifier: Verifier,
    *,
    careful: bool,
) -> str | None:
    """Returns, in the careful pass, why a believed event's projection failed (it is kept in the
    audit log: its chain goes on; the failure is quarantined)."""
    doc = verifier.doc(topic, partition, offset, value)
    verdict = verifier.judge(doc)
    if verdict == "seen":
        if not careful:
            raise Seen(f"{doc['aggregate_id']} v{doc['version']}")
        check_copy(cur, doc)  # the same event again passes, and is not applied twice below
    elif verdict is not None:
        raise Refused(verdict)
    env = EventEnvelope.from_bytes(value)
    # Fast path: a plain insert, so statements can be pipelined; an aggregate version seen twice
    # raises, and the batch is redone carefully, where it is skipped instead.
    cur.execute(
        _AUDIT_INSERT + (_AUDIT_CAREFUL if careful else ""),
        (
            env.aggregate_id,
            env.version,
            env.aggregate_type,
            env.event_id,
            env.type,
            env.actor,
            env.occurred_at,
            env.correlation_id,
            env.causation_id,
            value.decode(),  # the relay publishes canonical JSON: stored as is
            topic,
            partition,
            offset,
            seq,
        ),
    )
    if careful:
        inserted = cur.fetchone()  # None, or (False,): this version was projected already
        if inserted is None or not inserted[0]:
            return None  # never apply an event twice
    verifier.believed(doc)
    projection = PROJECTIONS.get(env.type)
    if projection is not None:
        event = Event(
            env.type,
            str(env.aggregate_id),
            env.version,
            env.actor,
            env.occurred_at,
            env.payload,
            str(env.event_id),
        )
        if not careful:
            execute(cur, projection(event))
            return None
        try:
            with cur.connection.transaction():
                execute(cur, projection(event))
        except PROJECTION_ERRORS as exc:
            return f"{type(exc).__name__}: {exc}"
    return None


PROJECTED = Counter(
    "veritas_projected_records_total", "Records applied to read models", ["outcome"]
)
PROJECTION_ERRORS = (
    ValueError,
    ValidationError,
    KeyError,
    psycopg.DataError,
    psycopg.IntegrityError,
)


def _apply(cur: Cursor, msg: Message, verifier: Verifier, *, careful: bool) -> str | None:
    (topic, partition, offset), value = where(msg), msg.value()
    if value is None:
        raise Refused("undecodable") if topic in EVENT_TOPICS else ValueError("empty record")
    if topic == RESULTS_TOPIC:
        _command_status(cur, value)
        return None
    seq = store_seq(headers(msg))
    return _event(cur, topic, partition, offset, value, seq, verifier, careful=careful)


def apply_record(conn: Connection, msg: Message, verifier: Verifier, *, isolate: bool) -> bool:
    """Apply one record. With `isolate`, a record that is refused or cannot be projected is set
    aside in rm_projection_errors (returns False) inside a savepoint, and spoils nothing else."""
    if not isolate:
        with conn.cursor() as cur:
            _apply(cur, msg, verifier, careful=False)
        return True
    try:
        with conn.transaction(), conn.cursor() as cur:
            failed = _apply(cur, msg, verifier, careful=True)
    except Refused as exc:
        quarantine(conn, msg, exc.reason, str(exc))
        return False
    except PROJECTION_ERRORS as exc:
        quarantine(conn, msg, "unprojectable", f"{type(exc).__name__}: {exc}")
        return False
    if failed is not None:
        quarantine(conn, msg, "unprojectable", failed)
    return failed is None


def apply_batch(
    conn: Connection, msgs: list[Message], done: dict[tuple[str, int], int], trust: Trust
) -> dict[tuple[str, int], int]:
    """Apply records in the caller's transaction, skipping offsets at or below `done` (already
    applied), and store the new positions. Returns the last offset applied per partition."""
    verifier = Verifier(trust)
    heads = load_heads(conn, verifier.aggregate_ids(msgs, EVENT_TOPICS))
    # Fast path without a savepoint per record; if any record fails, redo the batch carefully so
    # that only the bad record is set aside. Each pass starts from the heads stored before it.
    try:
        with conn.pipeline(), conn.transaction():  # one round trip for the whole batch
            applied = _apply_all(conn, msgs, done, verifier.starting(heads), isolate=False)
    except PROJECTION_ERRORS:
        applied = _apply_all(conn, msgs, done, verifier.starting(heads), isolate=True)
    save_positions(conn, applied)
    return applied


def _apply_all(
    conn: Connection,
    msgs: list[Message],
    done: dict[tuple[str, int], int],
    verifier: Verifier,
    *,
    isolate: bool,
) -> dict[tuple[str, int], int]:
    applied: dict[tuple[str, int], int] = {}
    for m in msgs:
        topic, partition, offset = where(m)
        key = (topic, partition)
        if offset <= applied.get(key, done.get(key, -1)):
            continue  # already applied before a rebalance re-delivered it
        ok = apply_record(conn, m, verifier, isolate=isolate)
        PROJECTED.labels("applied" if ok else "error").inc()
        applied[key] = offset
    return applied


def save_positions(conn: Connection, positions: dict[tuple[str, int], int]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO rm_projection_positions (topic, kafka_partition, kafka_offset) VALUES (%s,%s,%s)"
            " ON CONFLICT (topic, kafka_partition) DO UPDATE SET kafka_offset = excluded.kafka_offset",
            [(t, p, o) for (t, p), o in positions.items()],
        )


def load_positions(conn: Connection) -> dict[tuple[str, int], int]:
    rows = conn.execute("SELECT topic, kafka_partition, kafka_offset FROM rm_projection_positions")
    return {(t, p): o for t, p, o in rows.fetchall()}


def load_generation(conn: Connection, *, lock: bool = False) -> int:
    # FOR SHARE makes a batch wait while `veritas replay` swaps schemas, then see the new one.
    row = conn.execute(
        "SELECT generation FROM rm_meta FOR SHARE" if lock else "SELECT generation FROM rm_meta"
    ).fetchone()
    return int(row[0]) if row else 0

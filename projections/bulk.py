"""Bulk rebuild: fold a history in memory with the same pure projections the live projector runs
(projections.ops), verify every event on the way (hash, chain, signature), and COPY the rows into a fresh schema.

It handles a clean history only. Anything the record-by-record path treats specially (a record
that cannot be projected, a version out of order, a duplicate key) raises BulkUnsupported, and
the caller rebuilds record by record instead, which gives the exact live semantics.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import orjson
from confluent_kafka import Message
from psycopg import Connection
from pydantic import ValidationError

from events.envelope import (
    GENESIS_HASH,
    EventEnvelope,
    Undecodable,
    published_hash,
    read_published,
)
from events.results import CommandResult, EventRef
from events.signatures import check_signature
from infra.kafka import headers, where
from projections.apply import (
    AUDIT_RELOCATE,
    PROJECTIONS,
    RESULTS_TOPIC,
    STATUS_COLS,
    command_status_row,
    save_positions,
    store_seq,
)
from projections.believe import Trust
from projections.bulk_copy import (
    BulkUnsupported,
    Writer,
    columns,
    defer_indexes,
    json_text,
    restore_indexes,
)
from projections.ops import KEYS, Event, Insert, Op, Row

__all__ = ["BulkUnsupported", "Fold", "rebuild"]
# A v1 envelope's fields, or a v2 envelope's: those plus the version and the signature.
V2_FIELDS = frozenset({"envelope_version", "key_id", "signature"})
FIELDS = frozenset(EventEnvelope.model_fields) - V2_FIELDS
AUDIT_COLS = (
    "aggregate_id",
    "version",
    "aggregate_type",
    "event_id",
    "type",
    "actor",
    "occurred_at",
    "correlation_id",
    "causation_id",
    "envelope",
    "topic",
    "kafka_partition",
    "kafka_offset",
    "store_seq",
)
CHUNK = 10_000  # append-only rows are streamed out in COPYs of this many
TYPES = {
    k: int if k in ("version", "schema_version") else dict if k == "payload" else str
    for k in FIELDS
}
TYPES_V2: dict[str, type] = {"envelope_version": int, "key_id": str, "signature": str}
CANONICAL_UUID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
).fullmatch


def _envelope(value: bytes | None) -> dict[str, Any]:
    try:
        d = orjson.loads(value) if value else None
    except orjson.JSONDecodeError as exc:
        raise BulkUnsupported(f"undecodable event: {exc}") from exc
    if type(d) is not dict or not FIELDS <= d.keys() <= FIELDS | V2_FIELDS:
        raise BulkUnsupported("not an event envelope")
    for k, want in [*TYPES.items(), *TYPES_V2.items()]:
        if k in d and type(d[k]) is not want:
            raise BulkUnsupported(f"envelope field {k} is not a {want.__name__}")
    if not CANONICAL_UUID(d["aggregate_id"]):
        raise BulkUnsupported("aggregate_id is not in canonical form")
    return d


_RESULT_KEYS = frozenset(CommandResult.model_fields)
_REF_KEYS = frozenset(EventRef.model_fields)
_OPTIONAL = ("reason_code", "sub_code", "message")


def _plain_ref(e: Any) -> bool:
    return (
        type(e) is dict
        and e.keys() == _REF_KEYS
        and type(e["version"]) is int
        and type(e["event_id"]) is str
        and type(e["aggregate_id"]) is str
        and CANONICAL_UUID(e["event_id"]) is not None
        and CANONICAL_UUID(e["aggregate_id"]) is not None
    )


def _plain_status(value: bytes | None) -> tuple[Any, ...] | None:
    """The status row of a result written exactly as CommandResult.to_bytes() writes it, read
    without the model (it would change nothing); None for any other shape, which the model
    then reads (and coerces or refuses) as the live projector does."""
    try:
        d = orjson.loads(value) if value else None
    except orjson.JSONDecodeError:
        return None
    if type(d) is not dict or not d.keys() <= _RESULT_KEYS:
        return None
    events = d.get("events", [])
    if (
        type(d.get("command_id")) is not str
        or d.get("status") not in ("accepted", "rejected")
        or any(k in d and type(d[k]) is not str for k in _OPTIONAL)
        or type(events) is not list
        or not all(_plain_ref(e) for e in events)
    ):
        return None
    return (
        d["command_id"],
        d["status"],
        d.get("reason_code"),
        d.get("sub_code"),
        d.get("message"),
        orjson.dumps(events).decode(),
    )


def _hash_ok(d: dict[str, Any], value: bytes) -> bool:
    # The relay publishes canonical JSON with sorted keys, so the hashed body is the record's own
    # bytes minus the "hash" member (and a v2 envelope's "key_id" and "signature") (it sits between "event_id" and "occurred_at"; string values
    # before it cannot contain an unescaped quote). Other bytes get DESIGN's rule over their JSON
    # (parsed by the json module, as orjson reads integers beyond 64 bits as floats).
    body = value.replace(b'"hash":"' + d["hash"].encode() + b'",', b"", 1)
    if "key_id" in d:  # v2: the signature's members are outside the hash too
        body = body.replace(b'"key_id":' + orjson.dumps(d["key_id"]) + b",", b"", 1)
        member = b',"signature":' + orjson.dumps(d["signature"])
        at = body.rfind(member)
        body = body[:at] + body[at + len(member) :] if at >= 0 else body
    digest = hashlib.sha256(d["prev_hash"].encode() + b"\n" + body).hexdigest()
    if digest == d["hash"]:
        return True
    try:
        return bool(published_hash(read_published(value)) == d["hash"])
    except Undecodable as exc:
        raise BulkUnsupported(f"invalid envelope: {exc}") from exc


def _concat(old: Any, new: Any) -> Any:
    """jsonb `old || new` for the shapes projections append (arrays, objects)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return {**old, **new}
    if isinstance(old, list) and isinstance(new, list):
        return old + new
    raise BulkUnsupported(f"cannot append {type(new).__name__} to {type(old).__name__}")


class Fold:
    """The in-memory executor of projection operations, plus the chain and dedupe state."""

    def __init__(self, trust: Trust) -> None:
        self.trust = trust
        self.tables: dict[str, dict[tuple[Any, ...], Row]] = defaultdict(dict)
        self.audit: list[tuple[Any, ...]] = []
        self.status: list[tuple[Any, ...]] = []
        self.commands: set[str] = set()
        self.chains: dict[str, tuple[int, str]] = {}  # aggregate id -> (next version, last hash)
        self.copies: list[dict[str, Any]] = []  # versions met again, on another topic or offset
        self.positions: dict[tuple[str, int], int] = {}
        self.records = 0

    def ops(self, ops: Iterable[Op]) -> None:
        for op in ops:
            table = self.tables[op.table]
            if isinstance(op, Insert):
                key = tuple(op.row[c] for c in KEYS[op.table])
                if key in table:
                    raise BulkUnsupported(f"duplicate key {key} in {op.table}")
                table[key] = dict(op.row)
                continue
            if (op.key,) != KEYS[op.table]:
                raise BulkUnsupported(f"{op.table} is not addressed by {op.key}")
            row = table.get((op.value,))
            if row is None:
                continue  # as in SQL: an UPDATE that matches no row changes nothing
            row.update(op.set)
            row.update((c, v) for c, v in op.keep.items() if v is not None)
            row.update((c, _concat(row[c], v)) for c, v in op.append.items())

    def record(self, msg: Message) -> None:
        topic, partition, offset = where(msg)
        self.positions[(topic, partition)] = offset
        self.records += 1
        value = msg.value()
        if topic == RESULTS_TOPIC:
            self._result(value)
        else:
            self._event(topic, partition, offset, value, store_seq(headers(msg)))

    def _result(self, value: bytes | None) -> None:
        status = _plain_status(value)
        if status is None:
            try:
                row = command_status_row(value or b"")
            except ValidationError as exc:
                raise BulkUnsupported(f"undecodable result: {exc}") from exc
            status = tuple(json_text(row[c]) for c in STATUS_COLS)
        if status[0] not in self.commands:  # ON CONFLICT DO NOTHING: the first one wins
            self.commands.add(status[0])
            self.status.append(status)

    def _event(
        self, topic: str, partition: int, offset: int, value: bytes | None, seq: int | None
    ) -> None:
        d = _envelope(value)
        assert value is not None
        agg, version = d["aggregate_id"], d["version"]
        expected, last_hash = self.chains.get(agg, (1, GENESIS_HASH))
        if version < expected:  # projected already: never apply an event twice
            self.copies.append(
                {"a": agg, "v": version, "t": topic, "p": partition, "o": offset, "s": seq}
            )
            return
        if version != expected:
            raise BulkUnsupported(f"{agg} v{version} arrived before v{expected}")
        if d["prev_hash"] != last_hash or not _hash_ok(d, value):
            raise BulkUnsupported(f"{agg} v{version} does not extend its chain")
        try:
            occurred_at = datetime.fromisoformat(d["occurred_at"])
        except ValueError as exc:
            raise BulkUnsupported(f"{agg} v{version}: {exc}") from exc
        if occurred_at.tzinfo is None or (
            why := check_signature(d, occurred_at, self.trust.keys, self.trust.legacy)
        ):
            raise BulkUnsupported(f"{agg} v{version} is not believed ({why or 'undecodable'})")
        self.chains[agg] = (version + 1, d["hash"])
        projection = PROJECTIONS.get(d["type"])
        if projection is not None:
            event = Event(
                d["type"], agg, version, d["actor"], occurred_at, d["payload"], d["event_id"]
            )
            try:
                self.ops(projection(event))
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                raise BulkUnsupported(f"{agg} v{version} cannot be projected: {exc}") from exc
        self.audit.append(
            (
                agg,
                version,
                d["aggregate_type"],
                d["event_id"],
                d["type"],
                d["actor"],
                occurred_at,
                d["correlation_id"],
                d["causation_id"],
                value.decode(),
                topic,
                partition,
                offset,
                seq,
            )
        )


def _flush_appends(writer: Writer, fold: Fold) -> None:
    writer.put(("rm_audit_log", AUDIT_COLS, fold.audit))
    writer.put(("rm_command_status", STATUS_COLS, fold.status))
    fold.audit, fold.status = [], []  # the writer owns the old lists now


def rebuild(conn: Connection, batches: Iterator[list[Message]], trust: Trust) -> Fold:
    """Fold every record of `batches` and write the result to the schema on `conn`."""
    restore = defer_indexes(conn)
    fold, writer = Fold(trust), Writer(conn)
    try:
        for batch in batches:
            for msg in batch:
                fold.record(msg)
            if len(fold.audit) + len(fold.status) >= CHUNK:
                _flush_appends(writer, fold)
        _flush_appends(writer, fold)
        for table, rows in fold.tables.items():
            writer.put(columns(table, rows))
    finally:
        writer.close()
    restore_indexes(conn, restore)
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(AUDIT_RELOCATE, fold.copies)
        save_positions(conn, fold.positions)
    return fold

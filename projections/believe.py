"""What the projector believes: an event is applied only when its hash, its place in its
aggregate's chain and its signature verify (events.signatures). Anything else is refused with a
reason code and quarantined in rm_projection_errors, never applied and never silently skipped.

The chain heads of a batch's aggregates are read from the audit log (the events believed so far)
before the batch, and advanced in memory as it is applied.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka import Message
from prometheus_client import Counter
from psycopg import Connection, Cursor

from events.envelope import Undecodable, read_published
from events.signatures import Head, KeySource, Legacy, Reason, check_event, check_place
from infra.kafka import where

REFUSED = Counter(
    "veritas_projection_refused_total",
    "Event records the projector refused to apply (quarantined), by reason",
    ["reason"],
)


@dataclass(frozen=True)
class Trust:
    keys: KeySource
    legacy: Legacy


class Refused(ValueError):
    """An event record that does not verify: quarantined under `reason`."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(f"refused: {reason}")
        self.reason: Reason = reason


class Seen(ValueError):
    """A version believed already: a copy (applied once) or a conflict, which only the careful
    pass tells apart (it reads the stored hash)."""


@dataclass
class Verifier:
    trust: Trust
    heads: dict[str, Head] = field(default_factory=dict)
    # Each record is parsed once per batch, for both passes (topic, partition, offset) -> doc.
    parsed: dict[tuple[str, int, int], dict[str, Any] | Refused] = field(default_factory=dict)

    def doc(self, topic: str, partition: int, offset: int, value: bytes) -> dict[str, Any]:
        key = (topic, partition, offset)
        found = self.parsed.get(key)
        if found is None:
            try:
                found = read_published(value)
            except Undecodable:
                found = Refused("undecodable")
            self.parsed[key] = found
        if isinstance(found, Refused):
            raise found
        return found

    def aggregate_ids(self, msgs: list[Message], topics: Collection[str]) -> list[Any]:
        ids = []
        for m in msgs:
            topic, partition, offset = where(m)
            if topic in topics and m.value() is not None:
                with contextlib.suppress(Refused):
                    ids.append(self.doc(topic, partition, offset, m.value() or b"")["aggregate_id"])
        return ids

    def starting(self, heads: dict[str, Head]) -> Verifier:
        """A pass over the batch from these heads (the parse cache is shared)."""
        return Verifier(self.trust, dict(heads), self.parsed)

    def judge(self, doc: dict[str, Any]) -> Reason | Literal["seen"] | None:
        return check_event(doc, self.trust.keys, self.trust.legacy) or check_place(
            self.heads.get(doc["aggregate_id"]), doc["version"], doc["prev_hash"]
        )

    def believed(self, doc: dict[str, Any]) -> None:
        self.heads[doc["aggregate_id"]] = Head(doc["version"], doc["hash"])


CANONICAL_UUID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
).fullmatch


def load_heads(conn: Connection, aggregate_ids: Iterable[Any]) -> dict[str, Head]:
    # Only canonical ids: the audit log holds no other spelling (a forged one finds no head).
    ids = list({a for a in aggregate_ids if isinstance(a, str) and CANONICAL_UUID(a)})
    if not ids:
        return {}
    rows = conn.execute(
        "SELECT DISTINCT ON (aggregate_id) aggregate_id::text, version, envelope->>'hash'"
        " FROM rm_audit_log WHERE aggregate_id = ANY(%s::uuid[])"
        " ORDER BY aggregate_id, version DESC",
        (ids,),
    ).fetchall()
    return {a: Head(int(v), str(h)) for a, v, h in rows}


def stored_hash(cur: Cursor, aggregate_id: str, version: int) -> str | None:
    row = cur.execute(
        "SELECT envelope->>'hash' FROM rm_audit_log WHERE aggregate_id = %s AND version = %s",
        (aggregate_id, version),
    ).fetchone()
    return None if row is None else str(row[0])


def check_copy(cur: Cursor, doc: dict[str, Any]) -> None:
    """A version believed already: a copy of the same event passes (it is not applied again);
    another event under that version is refused."""
    if stored_hash(cur, doc["aggregate_id"], doc["version"]) != doc["hash"]:
        raise Refused("conflicting_version")


_QUARANTINE = (
    "INSERT INTO rm_projection_errors (topic, kafka_partition, kafka_offset, error, raw, reason,"
    " aggregate_type, aggregate_id, version) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)"
    " ON CONFLICT DO NOTHING"
)


def quarantine(conn: Connection, msg: Message, reason: str, error: str) -> None:
    """Set a record aside with its original bytes and, where it reads as an envelope, what it
    claims to be (aggregate, version)."""
    doc: dict[str, Any] = {}
    with contextlib.suppress(Undecodable):
        doc = read_published(msg.value() or b"")
    version = doc.get("version")
    conn.execute(
        _QUARANTINE,
        (
            msg.topic(),
            msg.partition(),
            msg.offset(),
            error[:2000],
            msg.value(),
            reason,
            *(str(doc[k])[:200] if k in doc else None for k in ("aggregate_type", "aggregate_id")),
            version if type(version) is int and abs(version) < 2**63 else None,
        ),
    )
    REFUSED.labels(reason).inc()

"""Zero-downtime replay: rebuild every read model from offset 0 of the topics into a fresh schema
while the live one keeps serving, then swap the two schemas in one transaction.

The swap locks the live rm_meta row (the live projector takes it FOR SHARE each batch, so it
pauses), brings both schemas to the same positions exactly (the rebuilt one up to the live one, and
a lagging live one up to the end the rebuild read to), optionally compares digests,
bumps the generation and renames the schemas. The live projector then sees the new generation and
continues from the rebuilt schema's positions.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from confluent_kafka import Consumer, Message, TopicPartition
from psycopg import Connection, sql

from events.envelope import ChainBreak
from infra.context import Infra as Container
from infra.kafka import where
from projections import bulk
from projections.apply import (
    EVENT_TOPICS,
    RESULTS_TOPIC,
    apply_batch,
    load_positions,
)
from projections.audit import verify_audit_log
from projections.believe import Trust
from projections.digest import digest
from projections.log_audit import LogReport, verify_log
from projections.schema import migrate

Progress = Callable[[int, int], None]  # (records done, records total)
# consume() returns a full batch or waits out this timeout: the last batch of a history is never
# full, so a long timeout was paid once per rebuild (0.5 s of a 4 s replay).
POLL_S = 0.05
TOPICS = (*EVENT_TOPICS, RESULTS_TOPIC)


@dataclass
class ReplayReport:
    records: int = 0
    seconds: float = 0.0
    rebuilt_digest: str = ""
    live_digest: str = ""
    chains_checked: int = 0
    chain_break: ChainBreak | None = None
    switched: bool = False
    schema: str = ""
    table_digests: dict[str, tuple[str, str]] = field(default_factory=dict)
    mode: str = ""  # "bulk", or "records" when the history needed the record-by-record path
    fallback_reason: str = ""
    live_caught_up: int = 0  # records the live schema lacked when the rebuild was done
    log: LogReport | None = None  # with verify: the log check (store, topics, signatures)

    @property
    def differing(self) -> list[str]:
        return [t for t, (rebuilt, live) in self.table_digests.items() if rebuilt != live]

    @property
    def digests_match(self) -> bool:
        return self.rebuilt_digest == self.live_digest

    @property
    def verified(self) -> bool:
        """Digests equal, the rebuilt copy's chains whole, and the log check (when run) clean.
        The swap does not wait for the log check: what it refuses the rebuild quarantined, and a
        forged record stays on its topic for good, so a forger could otherwise stop every replay."""
        log_ok = self.log is None or self.log.valid
        return self.digests_match and self.chain_break is None and log_ok


def _consumer(c: Container) -> Consumer:
    return Consumer(
        c.kafka_config(
            **{
                "group.id": f"veritas-replay-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
    )


def end_offsets(consumer: Consumer) -> dict[tuple[str, int], int]:
    out = {}
    for topic in TOPICS:
        for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            out[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[
                1
            ]
    return out


def _batches(
    consumer: Consumer,
    start: dict[tuple[str, int], int],
    stop: dict[tuple[str, int], int],
    progress: Progress | None = None,
    batch: int = 5000,
) -> Iterator[list[Message]]:
    """Records [start, stop) of every partition, in batches."""
    todo = {k: v for k, v in stop.items() if start.get(k, 0) < v}
    if not todo:
        return
    consumer.assign([TopicPartition(t, p, start.get((t, p), 0)) for (t, p) in todo])
    total, done = sum(v - start.get(k, 0) for k, v in todo.items()), 0
    while todo:
        msgs = []
        for m in consumer.consume(batch, POLL_S):
            if not m.error():
                topic, partition, offset = where(m)
                if offset < todo.get((topic, partition), -1):
                    msgs.append(m)
        yield msgs
        done += len(msgs)
        for tp in consumer.position([TopicPartition(t, p) for (t, p) in list(todo)]):
            if tp.offset >= todo[(tp.topic, tp.partition)]:
                del todo[(tp.topic, tp.partition)]
        if progress:
            progress(min(done, total), total)


def _copy_range(
    conn: Connection,
    consumer: Consumer,
    start: dict[tuple[str, int], int],
    stop: dict[tuple[str, int], int],
    trust: Trust,
    progress: Progress | None = None,
) -> int:
    """Apply records [start, stop) record by record to the schema on `conn`'s search_path."""
    done = 0
    for msgs in _batches(consumer, start, stop, progress, batch=2000):
        with conn.transaction():
            apply_batch(conn, msgs, {}, trust)
        done += len(msgs)
    return done


def _fresh_schema(admin: Connection, schema: str) -> None:
    admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    migrate(admin, schema)


def _rebuild(
    admin: Connection,
    conn: Connection,
    consumer: Consumer,
    report: ReplayReport,
    trust: Trust,
    progress: Progress | None,
) -> None:
    """Everything up to the current end of the topics: in bulk when the history allows it (every
    event verified on the way), record by record otherwise (which quarantines what does not)."""
    stop = end_offsets(consumer)
    try:
        fold = bulk.rebuild(conn, _batches(consumer, {}, stop, progress), trust)
        report.records, report.mode = fold.records, "bulk"
        report.chains_checked = len(fold.chains)
        return
    except bulk.BulkUnsupported as why:
        report.fallback_reason = str(why)
        _fresh_schema(admin, report.schema)
        records = _copy_range(conn, consumer, {}, stop, trust, progress)
        report.records, report.mode = records, "records"
    report.chains_checked, report.chain_break = verify_chains(conn, report.schema)


def verify_chains(conn: Connection, schema: str) -> tuple[int, ChainBreak | None]:
    """Verify the hash chain of every aggregate in a read-model audit log, from its JSON text
    (its signatures are those of the topics it was rebuilt from: the log check covers them)."""
    v = verify_audit_log(conn, schema)
    return v.aggregates, v.chain_break


def _compare(
    report: ReplayReport, admin: Connection, conn: Connection, live: str, new: str
) -> None:
    """Digest both schemas at once, one on each connection (the live one is locked meanwhile)."""
    rebuilt: dict[str, str] = {}
    other = threading.Thread(target=lambda: rebuilt.update(digest(conn, new)))
    other.start()
    current = digest(admin, live)
    other.join()
    report.rebuilt_digest, report.live_digest = rebuilt.get("total", ""), current["total"]
    report.table_digests = {t: (rebuilt.get(t, ""), current[t]) for t in current}


def replay(c: Container, *, verify: bool, progress: Progress | None = None) -> ReplayReport:
    live = c.settings.read_schema
    new = f"{live}_rebuild"
    report = ReplayReport(schema=new)
    t0 = time.monotonic()
    admin = c.read_model_connection(live)
    _fresh_schema(admin, new)
    conn = c.read_model_connection(new, durable=False)
    consumer = _consumer(c)
    try:
        trust = Trust(c.event_keys, c.legacy)
        _rebuild(admin, conn, consumer, report, trust, progress)
        if verify:  # before the lock: it reads the whole store and every event topic
            report.log = verify_log(c)
        with admin.transaction():
            admin.execute(
                "LOCK TABLE rm_meta IN ACCESS EXCLUSIVE MODE"
            )  # pauses the live projector
            _align(report, admin, conn, consumer, trust, live_too=verify)
            if verify:
                _compare(report, admin, conn, live, new)
            if not verify or (report.digests_match and report.chain_break is None):
                _swap(admin, live, new)
                report.switched = True
            elif report.live_caught_up:
                # The live projector's in-memory positions are behind what was applied here: a new
                # generation makes it reload them before its next batch.
                admin.execute("UPDATE rm_meta SET generation = generation + 1")
        if report.switched:
            admin.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(f"{live}_old"))
            )
    finally:
        consumer.close()
        conn.close()
        admin.close()
    report.seconds = time.monotonic() - t0
    return report


def _align(
    report: ReplayReport,
    admin: Connection,
    conn: Connection,
    consumer: Consumer,
    trust: Trust,
    *,
    live_too: bool,
) -> None:
    """Bring both schemas to the same position on every partition, under the lock: the rebuilt one
    up to where the live projector has got, and (when they are to be compared) the live one up to
    the end the rebuild read to, where the live projector lags or is not running."""
    live = {k: v + 1 for k, v in load_positions(admin).items()}
    rebuilt = {k: v + 1 for k, v in load_positions(conn).items()}
    target = {k: max(live.get(k, 0), rebuilt.get(k, 0)) for k in live.keys() | rebuilt.keys()}
    report.records += _copy_range(conn, consumer, rebuilt, target, trust)
    if live_too:
        report.live_caught_up = _copy_range(admin, consumer, live, target, trust)


def _swap(admin: Connection, live: str, new: str) -> None:
    old = f"{live}_old"
    admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(old)))
    admin.execute(
        sql.SQL(
            "UPDATE {}.rm_meta SET generation = (SELECT generation + 1 FROM {}.rm_meta)"
        ).format(sql.Identifier(new), sql.Identifier(live))
    )
    admin.execute(
        sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(live), sql.Identifier(old))
    )
    admin.execute(
        sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(new), sql.Identifier(live))
    )

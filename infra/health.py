"""Health that tells the truth, from the log and the stores rather than from the processes' word:
per-partition command lag and whether it moves, the relay's backlog (events stored but not yet on
Kafka), the projector's lag, projection errors, and the supervisor's view of every process.

A component with work that makes no progress for `stall_after_s` is `stalled`. Progress is kept
per (component, key) in a small Postgres table, so the API's background sampler and a one-shot
`veritas status` share one clock. The clock of a key starts at the first sample that sees it with
work and that position; moving, or having no work, resets it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, TopicPartition

from config.services import SERVING_SERVICES
from config.settings import Settings
from infra import kafka, supervisor
from infra.postgres import server as pg

Status = Literal["ok", "lagging", "stalled", "down"]
HANDLER_GROUP = "veritas-command-handler"
COMMAND_TOPICS = (
    "registry.commands",
    "governance.commands",
    "training.commands",
    "monitoring.commands",
    "serving.commands",
)
PROJECTED_TOPICS = (
    "registry.events",
    "governance.events",
    "training.events",
    "serving.events",
    "monitoring.events",
    "events.results",
)
PROGRESS_TABLE = "veritas_health_progress"


@dataclass(frozen=True)
class Component:
    name: str
    status: Status
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class Progress:
    """One key's position and work, as sampled."""

    key: str
    position: int
    backlog: int


def _consumer(s: Settings, group: str | None = None, **extra: bool | int | str) -> Consumer:
    return Consumer(
        kafka.client_config(
            s,
            principal="service",
            **{
                "group.id": group or f"veritas-health-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "socket.timeout.ms": 5000,
                **extra,
            },
        )
    )


def _partitions(
    consumer: Consumer, topics: tuple[str, ...], timeout_s: float
) -> list[TopicPartition]:
    meta = consumer.list_topics(timeout=timeout_s).topics
    return [TopicPartition(t, p) for t in topics if t in meta for p in sorted(meta[t].partitions)]


def command_progress(s: Settings, timeout_s: float = 5.0) -> list[Progress]:
    """The command handlers' committed offsets against each command partition's end."""
    consumer = _consumer(s, HANDLER_GROUP)
    try:
        parts = _partitions(consumer, COMMAND_TOPICS, timeout_s)
        committed = consumer.committed(parts, timeout=timeout_s)
        out = []
        for tp in committed:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
            pos = low if tp.offset in (OFFSET_INVALID, -1001) or tp.offset < 0 else tp.offset
            out.append(Progress(f"{tp.topic}/{tp.partition}", pos, max(0, high - pos)))
        return out
    finally:
        consumer.close()


def projector_progress(
    s: Settings, stored: dict[tuple[str, int], int], timeout_s: float = 5.0
) -> list[Progress]:
    """The projector's stored positions (last applied offset) against each partition's end. A
    transaction's commit marker takes one offset after its last record, so an up-to-date
    partition ends two past the last applied offset."""
    consumer = _consumer(s)
    try:
        out = []
        for tp in _partitions(consumer, PROJECTED_TOPICS, timeout_s):
            high = consumer.get_watermark_offsets(tp, timeout=timeout_s)[1]
            last = stored.get((tp.topic, tp.partition), -1)
            out.append(Progress(f"{tp.topic}/{tp.partition}", last, max(0, high - last - 2)))
        return out
    finally:
        consumer.close()


def readable_after(s: Settings, topic: str, partition: int, offset: int, timeout_s: float) -> bool:
    """Whether a read_committed reader finds any record at or after `offset`. Offsets alone
    overstate the work: aborted transactions and commit markers take offsets but hold nothing."""
    consumer = _consumer(s, None, **{"enable.partition.eof": True})
    try:
        consumer.assign([TopicPartition(topic, partition, max(0, offset))])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is None:
                return True
            if err.code() == KafkaError._PARTITION_EOF:
                return False
        return True  # could not tell: count it as work
    finally:
        consumer.close()


def relay_backlog(s: Settings, conn: psycopg.Connection) -> Progress:
    row = conn.execute(
        f"SELECT coalesce(max(notification_id), 0) FROM {s.db_schema}.veritas_events".encode()
    ).fetchone()
    stored = int(row[0]) if row else 0
    position = kafka.relay_position(s, principal="service")
    return Progress("notification_id", position, max(0, stored - position))


def ensure_table(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {schema}.{PROGRESS_TABLE} (component text, key text,"
        " position bigint NOT NULL, backlog bigint NOT NULL, changed_at timestamptz NOT NULL,"
        " sampled_at timestamptz NOT NULL, PRIMARY KEY (component, key))".encode()
    )


def stalled_for(
    conn: psycopg.Connection, schema: str, component: str, rows: list[Progress]
) -> dict[str, float]:
    """Record the sample; seconds each key has held work without moving (0 when it moves)."""
    out: dict[str, float] = {}
    for r in rows:
        got = conn.execute(
            f"INSERT INTO {schema}.{PROGRESS_TABLE} AS h VALUES (%s, %s, %s, %s, now(), now())"
            " ON CONFLICT (component, key) DO UPDATE SET position = excluded.position,"
            " backlog = excluded.backlog, sampled_at = now(), changed_at = CASE"
            " WHEN h.position = excluded.position AND h.backlog > 0 AND excluded.backlog > 0"
            " THEN h.changed_at ELSE now() END"
            " RETURNING extract(epoch FROM now() - changed_at)".encode(),
            (component, r.key, r.position, r.backlog),
        ).fetchone()
        out[r.key] = float(got[0]) if got else 0.0
    return out


def _assess(
    s: Settings,
    conn: psycopg.Connection,
    name: str,
    rows: list[Progress],
    probe: Any,
    max_backlog: int | None,
) -> Component:
    ages = stalled_for(conn, s.db_schema, name, rows)
    stuck = [
        r.key for r in rows if r.backlog > 0 and ages[r.key] >= s.health_stall_after_s and probe(r)
    ]
    backlog = sum(r.backlog for r in rows)
    data = {
        "backlog": backlog,
        "partitions": {
            r.key: {"position": r.position, "backlog": r.backlog, "still_s": round(ages[r.key], 1)}
            for r in rows
        },
    }
    if stuck:
        return Component(
            name,
            "stalled",
            f"no progress for {s.health_stall_after_s:.0f}s+ on {', '.join(stuck)}",
            data,
        )
    if max_backlog is not None and backlog > max_backlog:
        return Component(name, "lagging", f"{backlog} behind (more than {max_backlog})", data)
    return Component(name, "ok", f"{backlog} behind", data)


def processes(s: Settings) -> list[Component]:
    """The supervisor's view of every program, when the stack runs under one."""
    out = []
    for name, info in supervisor.all_info(s).items():
        if name in SERVING_SERVICES and not s.serving_enabled and info.state == "STOPPED":
            continue  # serving is off here, not down; a crashed one is EXITED/FATAL, still shown
        ok = info.state == "RUNNING"
        out.append(
            Component(f"process:{name}", "ok" if ok else "down", f"{info.state} {info.description}")
        )
    return out


def sample(s: Settings, stored_positions: Any, projection_errors: Any) -> list[Component]:
    """Every component's health. `stored_positions(conn)` and `projection_errors(conn)` read the
    read models (passed in: the read side owns those tables)."""
    out = [
        Component(
            "kafka",
            "ok" if kafka.broker_ready(s, principal="service") else "down",
            s.kafka_bootstrap_servers,
        ),
        Component(
            "postgres",
            "ok" if pg.is_ready(s.dsn) else "down",
            "embedded" if s.pg_embedded else "DATABASE_URL",
        ),
    ]
    out += processes(s)
    if any(c.status == "down" for c in out[:2]):
        return out
    with psycopg.connect(s.dsn, autocommit=True, connect_timeout=5) as conn:
        ensure_table(conn, s.db_schema)
        t = s.health_probe_timeout_s

        def probe_cmd(r: Progress) -> bool:
            topic, _, part = r.key.rpartition("/")
            return readable_after(s, topic, int(part), r.position, t)

        def probe_proj(r: Progress) -> bool:
            topic, _, part = r.key.rpartition("/")
            return readable_after(s, topic, int(part), r.position + 1, t)

        out.append(_assess(s, conn, "command-handlers", command_progress(s), probe_cmd, None))
        relay = [relay_backlog(s, conn)]
        out.append(_assess(s, conn, "relay-backlog", relay, lambda _: True, s.ready_max_lag))
        conn.execute(f"SET search_path = {s.read_schema}".encode())
        proj = projector_progress(s, stored_positions(conn))
        out.append(_assess(s, conn, "projector-lag", proj, probe_proj, s.ready_max_lag))
        # Quarantined records do not make the stack unready: a forger must not be able to stop it.
        by_reason: dict[str, int] = dict(projection_errors(conn))
        total = sum(by_reason.values())
        why = ", ".join(f"{r} {n}" for r, n in sorted(by_reason.items()))
        out.append(
            Component(
                "projection-errors",
                "ok",
                f"{total} records quarantined" + (f" ({why})" if why else ""),
                {"count": total, "by_reason": by_reason},
            )
        )
    return out


def ready(components: list[Component]) -> bool:
    return all(c.healthy for c in components)
